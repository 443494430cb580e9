use phx_channels::prelude::*;

socket! {
    pub S {
        channel "room:*" => A
        channel "lobby" => A;
    }
}

impl Connect for S {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

struct A;

#[channel(socket = S)]
impl A {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), A))
    }
}

fn main() {}
