use phx_channels::prelude::*;

socket! {
    pub UserSocket {}
}

fn main() {}
