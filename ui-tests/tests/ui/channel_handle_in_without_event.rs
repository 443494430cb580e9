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
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        Ok((json!({}), C))
    }

    #[handle_in]
    async fn ping(&mut self, _payload: Value) {}
}

fn main() {}
