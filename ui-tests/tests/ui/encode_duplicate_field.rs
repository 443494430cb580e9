use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id, content, id])]
struct Comment {
    id: u64,
    content: String,
}

fn main() {}
