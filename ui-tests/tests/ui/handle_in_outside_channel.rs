use phx_channels::prelude::*;

struct Comments;

impl Comments {
    #[handle_in("comment:add")]
    async fn add(&mut self, _payload: Value) -> Reply {
        Reply::ok(json!({}))
    }
}

fn main() {
    let _ = Comments;
}
