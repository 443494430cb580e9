use phx_channels::Encode;

#[derive(Encode)]
enum Event {
    Added,
}

fn main() {}
