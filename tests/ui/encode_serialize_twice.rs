// Deriving both without `impl_serialize = false`: two `Serialize` impls.
use phx_channels::Encode;

#[derive(serde::Serialize, Encode)]
#[encode(only = [content])]
struct Comment {
    content: String,
    author_email: String,
}

fn main() {}
