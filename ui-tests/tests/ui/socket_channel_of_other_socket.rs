use phx_channels::prelude::*;

socket! {
    pub UserSocket {
        channel "admin:*" => AdminChannel;
    }
}

socket! {
    pub AdminSocket {}
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

impl Connect for AdminSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

struct AdminChannel;

#[channel(socket = AdminSocket)]
impl AdminChannel {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), AdminChannel))
    }
}

fn main() {}
