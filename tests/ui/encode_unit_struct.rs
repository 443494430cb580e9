use channels::Encode;

#[derive(Encode)]
struct Marker;

fn main() {}
