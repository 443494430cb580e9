use phx_channels::Encode;

#[derive(Encode)]
struct Comment {
    id: u64,
    author: User,
}

struct User;

fn main() {}
