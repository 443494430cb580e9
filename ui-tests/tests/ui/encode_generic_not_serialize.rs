use phx_channels::Encode;

#[derive(Encode)]
#[encode(except = [hidden])]
struct Page<T, H> {
    items: Vec<T>,
    hidden: H,
}

struct NotSerialize;

fn main() {
    // `H` needs nothing, `T` must be `Serialize`.
    let ok = Page { items: vec![1], hidden: NotSerialize };
    let _ = serde_json::to_string(&ok);
    let bad = Page { items: vec![NotSerialize], hidden: () };
    let _ = serde_json::to_string(&bad);
}
