use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id, id, contnet], except = [], colour = 1)]
struct Comment {
    id: u64,
    content: String,
}

fn main() {}
