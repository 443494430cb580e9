use phx_channels::prelude::*;

socket! {
    pub UserSocket {
        channel "comments:*" => Comments;
    }
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

pub struct Comments;

#[channel(socket = UserSocket, history(size = 0, age = "5 minutes", max_bytes = "1MB", sise = 3, age = "1m"))]
impl Comments {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Comments))
    }
}

pub struct Twice;

#[channel(socket = UserSocket, history(age = 300), history)]
impl Twice {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Twice))
    }
}

fn main() {}
