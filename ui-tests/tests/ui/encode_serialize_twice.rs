// The board app: a row that derives serde's `Serialize` (for a REST
// route) beside `Encode` in one attribute. Two `Serialize` impls would mean
// the channels could send the REST shape, hidden column included.
//
// rustc expands `serde::Serialize` before `Encode` and removes it from the
// input `Encode` sees; the derive reads it back from this file at its own
// location and reports it at the `Encode` token, instead of rustc's bare
// E0119 (which is what a derive written by another macro, whose source
// cannot be read, still gets).
use phx_channels::Encode;

#[derive(Debug, serde::Serialize, Encode)]
#[encode(only = [id])]
struct Row {
    id: i64,
    owner_token: String,
}

fn main() {}
