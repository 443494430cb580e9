use phx_channels::Encode;

#[derive(Encode)]
#[encode(onyl = [id])]
struct Comment {
    id: u64,
}

fn main() {}
