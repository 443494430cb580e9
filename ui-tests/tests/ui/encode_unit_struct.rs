use phx_channels::Encode;

#[derive(Encode)]
struct Marker;

fn main() {}
