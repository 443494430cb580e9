use phx_channels::Encode;

type Maybe<T> = Option<T>;

#[derive(Encode)]
struct Comment {
    #[encode(skip_none)]
    content: String,
    #[encode(skip_none)]
    parent_id: Maybe<u64>,
}

#[derive(Encode)]
#[encode(skip_none)]
struct Post {
    id: u64,
}

fn main() {}
