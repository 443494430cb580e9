use channels::prelude::*;

socket! {
    pub UserSocket {}
}

fn main() {}
