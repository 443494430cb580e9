// `impl_serialize = false` is gone: it let a type keep a `Serialize` of its
// own, which every `&impl Serialize` channel API then sent instead of the
// `Encode` shape.
use phx_channels::Encode;

#[derive(Encode)]
#[encode(only = [id], impl_serialize = false)]
struct Row {
    id: i64,
    secret: String,
}

fn main() {}
