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

#[channel(socket = S, unknown = 1)]
impl C {
    #[handle_in("ping")]
    fn ping(&mut self, _payload: Value) {}

    #[handle_in("ping")]
    async fn pong(_payload: Value) {}

    #[handle_in("heartbeat")]
    async fn beat(&mut self, _payload: Value) {}

    #[handle_in("")]
    async fn nothing(&mut self, _payload: Value, _socket: &mut Socket<S>, _more: u8) {}
}

fn main() {}
