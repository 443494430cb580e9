//! Every form the macros accept, in one program.
#![deny(warnings)]

use phx_channels::prelude::*;
use serde::Deserialize;

mod chans {
    use phx_channels::prelude::*;
    use serde::Deserialize;

    use super::UserSocket;

    #[derive(Deserialize)]
    pub struct NewComment {
        pub content: String,
    }

    #[derive(Encode)]
    #[encode(only = [id, content])]
    pub struct Comment {
        pub id: u64,
        pub content: String,
        pub author_email: String,
    }

    pub struct Comments {
        topic_id: u64,
        count: u64,
    }

    #[channel(socket = UserSocket)]
    impl Comments {
        async fn join(topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
            let topic_id = topic.rest().parse()?;
            Ok((json!({}), Comments { topic_id, count: 0 }))
        }

        #[handle_in("comment:add")]
        async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
            self.count += 1;
            let comment = Comment { id: self.count, content: new.content, author_email: String::new() };
            socket.broadcast("comment:new", &json!({ "comment": comment, "topic": self.topic_id }))?;
            Ok(Reply::ok(json!({})))
        }

        // No socket argument, `&self`, a `()` reply, two events.
        #[handle_in("ping")]
        #[handle_in("ping:again")]
        async fn ping(&self, _payload: Value) {}

        // The raw payload.
        #[handle_in("raw")]
        async fn raw(&mut self, payload: Payload) -> Reply {
            Reply::ok(json!({ "binary": payload.as_json().is_none() }))
        }

        // A handler named like the trait's method.
        #[handle_in("handle_in")]
        async fn handle_in(&mut self, _payload: Value) -> Result<(), String> {
            Ok(())
        }

        pub(crate) fn helper(&self) -> u64 {
            self.topic_id
        }
    }
}

/// A channel generic over its state, with `pub(crate)` visibility and no
/// socket argument in `join`.
pub(crate) struct Room<T> {
    state: T,
}

#[derive(Deserialize)]
struct RoomParams {
    nick: String,
}

#[channel(socket = UserSocket)]
impl<T: Default + Send + 'static> Room<T> {
    async fn join(_topic: Topic, params: RoomParams) -> Join<Self> {
        Ok((json!({ "nick": params.nick }), Room { state: T::default() }))
    }

    #[handle_in("state")]
    async fn state(&mut self, _payload: Value, _socket: &mut Socket<UserSocket>) -> Reply {
        let _ = &self.state;
        Reply::none()
    }
}

/// A channel with no handlers at all.
struct Lobby;

#[channel(socket = UserSocket)]
impl Lobby {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
        Ok((json!({}), Lobby))
    }
}

socket! {
    /// The socket browsers connect to at /socket.
    #[derive(Clone, Copy, Debug)]
    pub UserSocket {
        channel "lobby" => Lobby;
        channel "comments:*" => crate::chans::Comments;
        channel "room:lobby" => Room<u8>;
        channel "room:*" => Room<String>;
    }
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

fn main() {
    let _ = Endpoint::new().socket("/socket", UserSocket);
    let _ = UserSocket;
    let comments: Option<chans::Comments> = None;
    let _ = comments.map(|c| c.helper());
}
