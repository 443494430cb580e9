use phx_channels::Encode;

#[derive(Encode)]
struct Comment {
    #[encode(renam = "body")]
    content: String,
    #[encode(skip_nil, colour = 1)]
    parent_id: Option<u64>,
}

fn main() {}
