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

struct Tick;

#[channel(socket = S)]
impl C {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        Ok((json!({}), C))
    }

    #[handle_info]
    async fn tick(&mut self, _tick: Tick) {}

    #[handle_info]
    async fn tock(&mut self, _tick: Tick) {}
}

fn main() {}
