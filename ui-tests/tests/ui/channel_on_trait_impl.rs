use phx_channels::prelude::*;

struct C;

trait Tr {}

#[channel(socket = S)]
impl Tr for C {}

fn main() {}
