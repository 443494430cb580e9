//! intercept/handle_out, handle_info, terminate, sync handlers and async
//! replies, compiled warning-free under pedantic lints.
#![deny(warnings, unused, clippy::pedantic)]

use std::time::Duration;

use phx_channels::prelude::*;

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

pub struct Tick(pub u32);
pub struct Flush;

pub struct Room {
    ticks: u32,
}

#[channel(socket = UserSocket, intercept = ["message:new", "typing"])]
impl Room {
    fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Room { ticks: 0 }))
    }

    #[handle_in("ping")]
    fn ping(&self, payload: Payload) -> Reply {
        Reply::ok(payload)
    }

    #[handle_in("later")]
    async fn later(&mut self, _payload: Value, socket: &mut Socket<UserSocket>) -> Reply {
        if let Some(reply_to) = socket.socket_ref() {
            tokio::spawn(async move { reply_to.reply(Reply::ok(json!({"done": true}))) });
        }
        socket.send_after(Duration::from_millis(10), Tick(1));
        Reply::none()
    }

    #[handle_out("message:new")]
    async fn message_new(&mut self, payload: Value, socket: &mut Socket<UserSocket>) -> Result<(), BroadcastError> {
        socket.push("message:new", &json!({"message": payload, "ticks": self.ticks}))
    }

    #[handle_info]
    fn tick(&mut self, tick: Tick) {
        self.ticks += tick.0;
    }

    #[handle_info]
    async fn flush(&mut self, _flush: Flush, socket: &mut Socket<UserSocket>) -> Reply {
        let _ = socket.push("flushed", &json!({}));
        Reply::stop()
    }

    async fn terminate(&mut self, reason: &Terminate, _socket: &mut Socket<UserSocket>) {
        let _ = (reason, self.ticks);
    }
}

fn main() {
    let _ = Endpoint::new().socket("/socket", UserSocket);
}
