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

#[channel(socket = S, intercept = ["comment:new"])]
impl C {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        Ok((json!({}), C))
    }

    #[handle_out("comment:edited")]
    async fn edited(&mut self, payload: Value, socket: &mut Socket<S>) {
        let _ = socket.push("comment:edited", &payload);
    }
}

fn main() {}
