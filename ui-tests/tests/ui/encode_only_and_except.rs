use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id], except = [content])]
struct Comment {
    id: u64,
    content: String,
}

fn main() {}
