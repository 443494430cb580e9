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
    async fn join(&mut self, _topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), C))
    }
}

fn main() {}
