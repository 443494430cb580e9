use phx_channels::prelude::*;

socket! {
    pub struct UserSocket {}
}

fn main() {}
