use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id, contnet])]
struct Comment {
    id: u64,
    content: String,
}

fn main() {}
