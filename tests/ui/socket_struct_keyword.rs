use channels::prelude::*;

socket! {
    pub struct UserSocket {}
}

fn main() {}
