// `Serialize` derived in an attribute above `#[derive(Encode)]` (line
// comments between them are skipped): read from the source, reported at
// `Encode`.
use phx_channels::Encode;

/// A card.
#[derive(Clone, serde::Serialize)]
// REST
#[derive(Encode)]
#[encode(only = [id])]
struct Card {
    id: i64,
    secret: String,
}

fn main() {}
