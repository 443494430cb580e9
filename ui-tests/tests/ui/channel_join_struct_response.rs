// A `join` declared `-> Join<Self>` (a `serde_json::Value` response) that
// answers with an `Encode` struct: rustc alone says "expected `Value`,
// found `Joined`" in the body; the error is at the return type, with the
// fix.
use phx_channels::prelude::*;

struct S;

impl Connect for S {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

#[derive(Encode)]
struct Joined {
    comments: Vec<String>,
}

struct C;

#[channel(socket = S)]
impl C {
    async fn join(topic: Topic, _params: Value) -> Join<Self> {
        if topic.rest().is_empty() {
            return Err(JoinError::reason("no id"));
        }
        let joined = Joined { comments: Vec::new() };
        Ok((joined, C))
    }
}

fn main() {}
