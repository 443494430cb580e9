//! Every form of the three macros in a crate that denies warnings, unused
//! code and `clippy::pedantic`. `cargo clippy --all-targets` lints this file
//! with the expansions in it, so generated code that trips a lint fails CI
//! (trybuild's pass cases only compile). The tests run the channels
//! through `TestSocket` so every handler is reached.
#![deny(warnings, unused, clippy::pedantic)]

use std::marker::PhantomData;
use std::time::Duration;

use phx_channels::prelude::*;
use phx_channels::testing::TestSocket;
use serde::Deserialize;

socket! {
    /// The socket of these tests.
    #[derive(Clone, Copy, Debug)]
    pub UserSocket {
        channel "lobby" => Lobby;
        channel "comments:*" => chans::Comments;
        channel "room:*" => Room;
        channel "counter:*" => Counter<u32>;
    }
}

impl Connect for UserSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

mod chans {
    use phx_channels::prelude::*;
    use serde::Deserialize;

    use super::UserSocket;

    #[derive(Deserialize)]
    pub struct NewComment {
        pub content: String,
    }

    /// `only`, raw identifiers.
    #[derive(Encode)]
    #[encode(only = [id, content, r#type])]
    pub struct Comment {
        pub id: u64,
        pub r#type: &'static str,
        pub content: String,
        pub author_email: String,
    }

    pub struct Comments {
        topic_id: u64,
        count: u64,
        pings: u64,
    }

    /// `join` with the socket, handlers with and without it, `&self`,
    /// `Result` and `()` replies, two events on one method.
    #[channel(socket = UserSocket)]
    impl Comments {
        async fn join(topic: Topic, _params: Value, socket: &mut Socket<UserSocket>) -> Join<Self> {
            tokio::task::yield_now().await;
            let topic_id = topic.rest().parse()?;
            socket.push("welcome", json!({ "topic_id": topic_id }))?;
            Ok((json!({ "topic_id": topic_id }), Comments { topic_id, count: 0, pings: 0 }))
        }

        #[handle_in("comment:add")]
        async fn add(&mut self, new: NewComment, socket: &mut Socket<UserSocket>) -> Result<Reply, BroadcastError> {
            tokio::task::yield_now().await;
            self.count += 1;
            let comment = Comment { id: self.count, r#type: "text", content: new.content, author_email: String::new() };
            socket.broadcast("comment:new", json!({ "comment": comment, "topic": self.topic_id }))?;
            Ok(Reply::ok(json!({ "id": self.count })))
        }

        #[handle_in("ping")]
        #[handle_in("ping:again")]
        fn ping(&mut self, _payload: Value) {
            self.pings += 1;
        }

        #[handle_in("raw")]
        async fn raw(&mut self, payload: Payload) -> Reply {
            tokio::task::yield_now().await;
            Reply::ok(json!({ "binary": payload.as_json().is_none() }))
        }

        #[handle_in("count")]
        fn count(&self, _payload: Value) -> Reply {
            Reply::ok(json!({ "comments": self.count, "pings": self.pings }))
        }
    }
}

#[derive(Deserialize)]
struct RoomParams {
    nick: String,
}

/// A message to the room from another task.
#[derive(Clone, Copy)]
struct Tick(u32);

/// Stops the room.
struct Flush;

/// `except`, generics and lifetimes.
#[derive(Encode)]
#[encode(except = [hidden])]
struct Snapshot<'a, T, M> {
    nick: &'a str,
    ticks: T,
    hidden: u64,
    marker: PhantomData<M>,
}

/// A type that is not `Serialize`, fine as `M` in `PhantomData`.
struct Opaque;

struct Room {
    nick: String,
    step: u32,
    ticks: u32,
    secret: u64,
}

/// Sync `join` without the socket, `intercept` + `handle_out`,
/// `handle_info` sync and async, `terminate` with the socket.
#[channel(socket = UserSocket, intercept = ["shout"])]
impl Room {
    fn join(_topic: Topic, params: RoomParams) -> Join<Self> {
        if params.nick.is_empty() {
            return Err(JoinError::reason("empty nick"));
        }
        Ok((json!({ "nick": params.nick }), Room { nick: params.nick, step: 2, ticks: 0, secret: 7 }))
    }

    #[handle_in("tick")]
    fn tick_later(&mut self, _payload: Value, socket: &mut Socket<UserSocket>) -> Reply {
        socket.send_after(Duration::from_millis(1), Tick(self.step));
        Reply::ok(json!({}))
    }

    #[handle_in("snapshot")]
    fn snapshot(&self, _payload: Value) -> Reply {
        let snapshot =
            Snapshot { nick: &self.nick, ticks: self.ticks, hidden: self.secret, marker: PhantomData::<Opaque> };
        Reply::ok(&snapshot)
    }

    #[handle_in("flush")]
    fn flush_later(&mut self, _payload: Value, socket: &mut Socket<UserSocket>) -> Reply {
        self.step = 0;
        socket.send_after(Duration::from_millis(1), Flush);
        Reply::none()
    }

    #[handle_out("shout")]
    async fn shout(&mut self, payload: Value, socket: &mut Socket<UserSocket>) -> Result<(), BroadcastError> {
        tokio::task::yield_now().await;
        let text = payload["text"].as_str().unwrap_or_default().to_uppercase();
        socket.push("shout", json!({ "text": text }))
    }

    #[handle_info]
    fn tick(&mut self, tick: Tick, socket: &mut Socket<UserSocket>) -> Result<(), BroadcastError> {
        self.ticks += tick.0;
        socket.push("ticked", json!({ "ticks": self.ticks }))
    }

    #[handle_info]
    async fn flush(&mut self, _flush: Flush, socket: &mut Socket<UserSocket>) -> Reply {
        tokio::task::yield_now().await;
        // Only fails when the client is gone, and then the channel stops anyway.
        socket.push("flushed", json!({})).ok();
        Reply::stop()
    }

    async fn terminate(&mut self, _reason: &Terminate, socket: &mut Socket<UserSocket>) {
        tokio::task::yield_now().await;
        socket.broadcast("left", json!({ "nick": self.nick })).ok();
    }
}

#[derive(Clone, Copy, Deserialize)]
struct CounterParams {
    start: Option<u32>,
}

/// A generic channel with a where clause.
struct Counter<T>(T);

#[channel(socket = UserSocket)]
impl<T> Counter<T>
where
    T: Copy + From<u32> + Into<u64> + Send + 'static,
{
    fn join(_topic: Topic, params: CounterParams) -> Join<Self> {
        let start = params.start.ok_or_else(|| JoinError::new(json!({ "reason": "no start" })))?;
        Ok((json!({}), Counter(T::from(start))))
    }

    #[handle_in("get")]
    fn get(&self, _payload: Value) -> Reply {
        let value: u64 = self.0.into();
        Reply::ok(json!({ "value": value }))
    }
}

/// A channel with no handlers and a `terminate` that does not take the
/// socket.
struct Lobby {
    name: &'static str,
}

#[channel(socket = UserSocket)]
impl Lobby {
    async fn join(_topic: Topic, _params: Value, _socket: &mut Socket<UserSocket>) -> Join<Self> {
        tokio::task::yield_now().await;
        Ok((json!({}), Lobby { name: "lobby" }))
    }

    fn terminate(&mut self, _reason: &Terminate) {
        tracing::debug!(name = self.name, "left");
    }
}

async fn connect() -> TestSocket<UserSocket> {
    let Ok(socket) = TestSocket::<UserSocket>::connect(&[]).await else {
        panic!("UserSocket refused the connection");
    };
    socket
}

#[tokio::test]
async fn comments() {
    let mut socket = connect().await;
    let (reply, channel) = socket.join("comments:42", json!({})).await.expect("joins");
    assert_eq!(reply, json!({ "topic_id": 42 }));
    channel.assert_push("welcome", json!({ "topic_id": 42 })).await;

    let r = channel.push("comment:add", json!({ "content": "hi" }));
    channel.assert_reply(&r, Status::Ok, json!({ "id": 1 })).await;
    channel
        .assert_broadcast(
            "comment:new",
            json!({ "comment": { "id": 1, "type": "text", "content": "hi" }, "topic": 42 }),
        )
        .await;

    // `()` replies nothing; the reply to "count" comes after them.
    let _ = channel.push("ping", json!({}));
    let _ = channel.push("ping:again", json!({}));
    let r = channel.push("raw", json!({}));
    channel.assert_reply(&r, Status::Ok, json!({ "binary": false })).await;
    let r = channel.push("count", json!({}));
    channel.assert_reply(&r, Status::Ok, json!({ "comments": 1, "pings": 2 })).await;
    let r = channel.push("comment:add", json!({ "text": "no content" }));
    let (status, _) = channel.reply(&r).await;
    assert_eq!(status, "error");

    assert!(socket.join("comments:x", json!({})).await.is_err());
}

#[tokio::test]
async fn room() {
    let mut socket = connect().await;
    assert!(socket.join("room:1", json!({})).await.is_err(), "no nick");
    assert_eq!(socket.join("room:1", json!({ "nick": "" })).await.err(), Some(json!({ "reason": "empty nick" })));
    let (reply, channel) = socket.join("room:1", json!({ "nick": "ann" })).await.expect("joins");
    assert_eq!(reply, json!({ "nick": "ann" }));

    let r = channel.push("tick", json!({}));
    channel.assert_reply(&r, Status::Ok, json!({})).await;
    channel.assert_push("ticked", json!({ "ticks": 2 })).await;

    let r = channel.push("snapshot", json!({}));
    channel.assert_reply(&r, Status::Ok, json!({ "nick": "ann", "ticks": 2, "marker": null })).await;

    channel.broadcast("shout", json!({ "text": "hey" }));
    channel.assert_push("shout", json!({ "text": "HEY" })).await;

    let r = channel.push("unknown", json!({}));
    let (status, _) = channel.reply(&r).await;
    assert_eq!(status, "error");

    let _ = channel.push("flush", json!({}));
    channel.assert_push("flushed", json!({})).await;
    channel.assert_broadcast("left", json!({ "nick": "ann" })).await;
    channel.assert_closed().await;
}

#[tokio::test]
async fn counter_and_lobby() {
    let mut socket = connect().await;
    assert_eq!(socket.join("counter:1", json!({})).await.err(), Some(json!({ "reason": "no start" })));
    let (reply, counter) = socket.join("counter:1", json!({ "start": 5 })).await.expect("joins");
    assert_eq!(reply, json!({}));
    let r = counter.push("get", json!({}));
    counter.assert_reply(&r, Status::Ok, json!({ "value": 5 })).await;
    let r = counter.push("anything", json!({}));
    let (status, _) = counter.reply(&r).await;
    assert_eq!(status, "error");

    let (_, lobby) = socket.join("lobby", json!({})).await.expect("joins");
    let (status, _) = lobby.leave().await;
    assert_eq!(status, "ok");
}

#[test]
fn encode_leaves_fields_out() {
    let comment = chans::Comment { id: 1, r#type: "text", content: "hi".into(), author_email: "a@b.c".into() };
    let value = serde_json::to_value(&comment).expect("serializes");
    assert_eq!(value, json!({ "id": 1, "type": "text", "content": "hi" }));
    assert_eq!(comment.author_email, "a@b.c", "kept on the struct");

    let snapshot = Snapshot { nick: "ann", ticks: 3_u8, hidden: 9, marker: PhantomData::<Opaque> };
    let value = serde_json::to_value(&snapshot).expect("serializes");
    assert_eq!(value, json!({ "nick": "ann", "ticks": 3, "marker": null }));
    assert_eq!(snapshot.hidden, 9, "kept on the struct");
}
