use phx_channels::Encode;

#[derive(Encode)]
#[encode(rename_all = "camelcase")]
struct Comment {
    user_id: u64,
}

#[derive(Encode)]
#[encode(rename_all = "title")]
struct Post {
    user_id: u64,
}

fn main() {}
