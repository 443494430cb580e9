use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = id)]
struct Comment {
    id: u64,
}

fn main() {}
