use phx_channels::prelude::*;

socket! {
    #![krate = phx_channels]
    pub UserSocket {}
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

fn main() {}
