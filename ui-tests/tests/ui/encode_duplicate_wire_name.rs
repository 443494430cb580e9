use phx_channels::Encode;

#[derive(Encode)]
#[encode(rename_all = "camelCase")]
struct Comment {
    user_id: u64,
    userId: u64,
}

#[derive(Encode)]
struct Post {
    author: String,
    #[encode(rename = "author")]
    author_id: u64,
}

fn main() {}
