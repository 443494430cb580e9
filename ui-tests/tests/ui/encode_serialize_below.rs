// `Serialize` derived in an attribute below `#[derive(Encode)]`: still in
// the derive's input, reported at its own token.
use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id])]
#[derive(Serialize)]
struct Card {
    id: i64,
    secret: String,
}

use serde::Serialize;

fn main() {}
