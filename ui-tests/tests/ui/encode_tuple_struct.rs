use phx_channels::Encode;

#[derive(Encode)]
struct Id(u64);

fn main() {}
