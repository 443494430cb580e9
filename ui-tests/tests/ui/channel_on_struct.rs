use phx_channels::prelude::*;

#[channel(socket = S)]
struct C;

fn main() {}
