use channels::Encode;

#[derive(Encode)]
enum Event {
    Added,
}

fn main() {}
