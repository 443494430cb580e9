// `Valid<T>` where `T` has no `validator::Validate`: the first (and only)
// error says so, at the argument.
use phx_channels::prelude::*;

struct S;

impl Connect for S {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

/// Deserialize, but no `#[derive(validator::Validate)]`.
#[derive(serde::Deserialize)]
struct NewComment {
    content: String,
}

struct C;

#[channel(socket = S)]
impl C {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        Ok((json!({}), C))
    }

    #[handle_in("comment:add")]
    async fn add(&mut self, new: Valid<NewComment>) -> Reply {
        Reply::ok(json!({"content": new.into_inner().content}))
    }
}

fn main() {}
