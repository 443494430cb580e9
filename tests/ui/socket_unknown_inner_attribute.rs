use channels::prelude::*;

socket! {
    #![krate = channels]
    pub UserSocket {}
}

impl Connect for UserSocket {
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo) -> Result<(), Refuse> {
        Ok(())
    }
}

fn main() {}
