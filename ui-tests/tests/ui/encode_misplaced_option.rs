use phx_channels::Encode;

#[derive(Encode)]
#[encode(rename = "comment", only = [content, id])]
struct Comment {
    #[encode(only = [content], rename_all = "camelCase")]
    content: String,
    id: u64,
    #[encode(rename = "secretHash")]
    secret_hash: String,
}

fn main() {}
