//! The status `TestChannel::reply` returns is the `Status` that
//! `assert_reply` takes: comparing them compiles (it was `String` against
//! `Status`, error E0277), and the wire form still compares too.
#![deny(warnings, unused, clippy::pedantic)]

use phx_channels::prelude::*;
use phx_channels::testing::TestSocket;

phx_channels::socket! {
    pub UserSocket {
        channel "room:*" => Room;
    }
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

pub struct Room;

#[channel(socket = UserSocket)]
impl Room {
    fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Room))
    }

    #[handle_in("ping")]
    fn ping(&self, payload: Payload) -> Reply {
        Reply::ok(payload)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut socket = TestSocket::<UserSocket>::connect(&[]).await.expect("connects");
    let (_, room) = socket.join("room:1", json!({})).await.expect("joins");
    let push = room.push("ping", json!({"n": 1}));
    let (status, response) = room.reply(&push).await;
    let _one_type: Status = status;
    assert_eq!(status, Status::Ok);
    assert_eq!(status, "ok");
    assert!(status != "error");
    assert_eq!(response, json!({"n": 1}));
    let push = room.push("nope", json!({}));
    let (status, _) = room.reply(&push).await;
    assert_eq!(status, Status::Error);
    let (status, _) = room.leave().await;
    assert_eq!(status, Status::Ok);
}
