//! `crate = path`: the macros reach the runtime through a re-export.
#![deny(warnings)]

mod reexport {
    pub use phx_channels as chans;
}

use phx_channels::prelude::*;

socket! {
    #![crate = crate::reexport::chans]
    pub(crate) Sock {
        channel "a:*" => A;
    }
}

impl Connect for Sock {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

struct A;

#[channel(socket = Sock, crate = crate::reexport::chans)]
impl A {
    async fn join(_topic: Topic, _params: Payload, _socket: &mut Socket<Sock>) -> Join<Self> {
        Ok((json!({}), A))
    }

    #[handle_in("e")]
    async fn e(&mut self, payload: Value) -> Reply {
        Reply::ok(payload)
    }
}

#[derive(Encode)]
#[encode(crate = crate::reexport::chans, only = [x])]
struct E {
    x: u8,
    #[allow(dead_code)]
    y: u8,
}

fn main() {
    let _ = Endpoint::new().socket("/s", Sock);
    assert_eq!(serde_json::to_string(&E { x: 1, y: 2 }).unwrap(), r#"{"x":1}"#);
}
