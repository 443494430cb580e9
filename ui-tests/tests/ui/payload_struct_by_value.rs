use phx_channels::prelude::*;

struct S;

impl Connect for S {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct Saved {
    id: u64,
}

struct C;

#[channel(socket = S)]
impl C {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<S>) -> Join<Self> {
        Ok((json!({}), C))
    }

    #[handle_in("save")]
    async fn save(&mut self, _payload: Value, socket: &mut Socket<S>) -> Result<Reply, BroadcastError> {
        let saved = Saved { id: 7 };
        // A struct by value is not a payload: `&saved` is.
        socket.broadcast("saved", saved)?;
        Ok(Reply::ok(Saved { id: 8 }))
    }
}

fn main() {}
