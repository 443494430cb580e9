use phx_channels::prelude::*;

struct S;

impl Connect for S {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

struct C;

#[channel(socket = S)]
impl C {
    async fn join(topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        // 0.1's refusal: a bare JSON value is no longer a `JoinError`.
        if topic.rest().is_empty() {
            return Err(json!({"reason": "invalid topic"}));
        }
        Ok((json!({}), C))
    }
}

fn main() {}
