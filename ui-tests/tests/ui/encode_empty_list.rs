use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [])]
struct Comment {
    id: u64,
}

fn main() {}
