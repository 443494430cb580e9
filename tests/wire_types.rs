//! Only what a model chooses ever leaves the server, and the generated
//! TypeScript says what that is: every typed reply, typed join reply and
//! declared push of the examples and the test fixtures, driven over a real
//! WebSocket, each frame actually received checked by the pinned `tsc`
//! against the type `typescript::render` wrote for it (an object literal
//! with a key its type lacks, a missing key or a value of another kind is
//! an error). A place a channel describes with a type but that no frame
//! reached fails the test too, so a new typed event cannot go unchecked.
//!
//! The board app of issue 22 is here as a fixture: a row with a secret
//! column, sent every way a channel can send it, must send `{"id":1}`.

#[path = "../examples/chat.rs"]
#[allow(dead_code)]
mod chat;
#[path = "../examples/discuss/app.rs"]
#[allow(dead_code)]
mod discuss;
#[path = "../examples/relay.rs"]
#[allow(dead_code)]
mod relay;
#[path = "support/mod.rs"]
mod support;
#[path = "support/typed.rs"]
mod typed;
#[path = "support/wire.rs"]
mod wire;

use std::net::SocketAddr;

use phx_channels::typescript::{render, route_shapes};
use phx_channels::{Endpoint, PubSub};
use serde_json::{json, Value};
use wire::{Body, Capture, Wire};

/// Serves `endpoint` on a free loopback port until the test ends.
async fn serve<St: Send + Sync + 'static>(endpoint: Endpoint<St>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("has an address");
    tokio::spawn(endpoint.serve_with_shutdown(listener, std::future::pending()));
    addr
}

/// An empty capture for socket type `$socket`, its module rendered.
macro_rules! capture {
    ($socket:ty, $name:literal) => {
        Capture::new(
            $name,
            route_shapes::<$socket>(),
            render::<$socket>().unwrap_or_else(|e| panic!("{} renders: {e}", $name)),
        )
    };
}

/// The board app of issue 22: a card row read from a database (a stand-in
/// for `sqlx::FromRow`, without a database), deriving `Encode` with
/// `only = [id]`, and a channel that sends it every way there is.
mod board {
    use std::collections::HashMap;

    use phx_channels::describe::{PresenceDiff, PresenceState};
    use phx_channels::prelude::*;
    use phx_channels::TypedReply;

    socket! {
        pub BoardSocket {
            channel "board:*" => Board;
        }
    }

    impl Connect for BoardSocket {
        type State = ();
        type Assigns = ();
        async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
            Ok(())
        }
    }

    /// What `sqlx::FromRow` does: a value from a row's columns.
    pub trait FromRow: Sized {
        fn from_row(row: &HashMap<&str, Value>) -> Option<Self>;
    }

    /// A card as stored: the owner's token is a column that must never
    /// leave the server.
    #[derive(Debug, Clone, Encode)]
    #[encode(only = [id])]
    pub struct Row {
        pub id: i64,
        pub owner_token: String,
    }

    impl FromRow for Row {
        fn from_row(row: &HashMap<&str, Value>) -> Option<Self> {
            Some(Row { id: row.get("id")?.as_i64()?, owner_token: row.get("owner_token")?.as_str()?.to_owned() })
        }
    }

    /// The card with id 1, as the database returns it: every column.
    pub fn fetch() -> Row {
        let columns = HashMap::from([("id", json!(1)), ("owner_token", json!("s3cret"))]);
        Row::from_row(&columns).expect("a card row")
    }

    /// Rows nested in a model.
    #[derive(Encode)]
    pub struct Listing {
        rows: Vec<Row>,
        newest: Option<Row>,
    }

    fn listing() -> Listing {
        Listing { rows: vec![fetch(), fetch()], newest: Some(fetch()) }
    }

    pub struct Board;

    struct AfterJoin;

    #[channel(socket = BoardSocket, out = [
        "card" => Row,
        "card:from" => Row,
        "card:local" => Row,
        "card:endpoint" => Row,
        "listing" => Listing,
        "presence_state" => PresenceState<Row>,
        "presence_diff" => PresenceDiff<Row>,
    ])]
    impl Board {
        /// A typed join reply.
        async fn join(_topic: Topic, _params: Value, socket: &mut Socket<BoardSocket>) -> Join<Self, Row> {
            let _ = socket.channel_ref().send(AfterJoin);
            Ok((fetch(), Board))
        }

        /// The row as a presence meta, then the state.
        #[handle_info]
        fn after_join(&mut self, _: AfterJoin, socket: &mut Socket<BoardSocket>) -> Result<(), PresenceError> {
            Presence::track(socket, "card", fetch())?;
            let _ = socket.push("presence_state", Presence::list(socket));
            Ok(())
        }

        /// The handler: a typed reply of the row itself.
        #[handle_in("card:get")]
        async fn get(&mut self, _payload: Value) -> TypedReply<Row> {
            TypedReply::ok(fetch())
        }

        /// Untyped: `Reply::ok(&row)`, as the issue wrote it.
        #[handle_in("card:reply")]
        #[allow(clippy::needless_borrows_for_generic_args)]
        async fn reply(&mut self, _payload: Value) -> Reply {
            Reply::ok(&fetch())
        }

        /// Untyped: the row inside `json!`.
        #[handle_in("card:json")]
        async fn json(&mut self, _payload: Value) -> Reply {
            Reply::ok(json!({"card": fetch()}))
        }

        /// Every way to push and broadcast it; answered with rows nested
        /// in a model.
        #[handle_in("card:send")]
        async fn send(
            &mut self,
            _payload: Value,
            socket: &mut Socket<BoardSocket>,
        ) -> Result<TypedReply<Listing>, BroadcastError> {
            let row = fetch();
            socket.push("card", &row)?;
            socket.broadcast("card", &row)?;
            socket.broadcast_from("card:from", &row)?;
            socket.local_broadcast("card:local", &row)?;
            socket.push("listing", listing())?;
            Ok(TypedReply::ok(listing()))
        }
    }
}

/// Drives the board app with two clients; returns what they received.
async fn drive_board() -> Capture {
    let endpoint = Endpoint::new().socket("/socket", board::BoardSocket);
    let from_outside = endpoint.clone();
    let addr = serve(endpoint).await;
    let topic = "board:1";
    let mut a = Wire::connect(addr, "").await;
    let mut b = Wire::connect(addr, "").await;
    assert_eq!(a.join(topic, json!({})).await.0, "ok");
    a.events(topic, "presence_state", 1).await;
    assert_eq!(b.join(topic, json!({})).await.0, "ok");
    b.events(topic, "presence_state", 1).await;
    for event in ["card:get", "card:reply", "card:json"] {
        assert_eq!(a.push(topic, event, json!({})).await.0, "ok", "{event}");
    }
    assert_eq!(a.push(topic, "card:send", json!({})).await.0, "ok");
    from_outside.broadcast(topic, "card:endpoint", board::fetch()).expect("broadcasts");
    for wire in [&a, &b] {
        wire.events(topic, "card:endpoint", 1).await;
        wire.events(topic, "card:local", 1).await;
    }
    b.events(topic, "card:from", 1).await;
    a.events(topic, "listing", 1).await;
    // `a` sees `b` join and leave (diffs are batched: how many frames that
    // takes depends on the timing).
    b.leave(topic).await;
    a.event_until(topic, "presence_diff", |diff| diff.json()["leaves"].as_object().is_some_and(|l| !l.is_empty()))
        .await;
    let mut capture = capture!(board::BoardSocket, "board");
    capture.add(&a);
    capture.add(&b);
    capture
}

/// Whether `value` holds the hidden column's name or value anywhere.
fn leaks(value: &Value) -> bool {
    match value {
        Value::String(s) => s == "s3cret",
        Value::Array(items) => items.iter().any(leaks),
        Value::Object(map) => map.iter().any(|(k, v)| k == "owner_token" || leaks(v)),
        _ => false,
    }
}

#[tokio::test]
async fn the_board_app_sends_only_the_chosen_column() {
    assert_eq!(board::fetch().owner_token, "s3cret", "the server has the column");
    let capture = drive_board().await;
    let row = json!({"id": 1});
    let mut seen = std::collections::BTreeSet::new();
    for frame in &capture.frames {
        let payload = frame.payload.json();
        assert!(!leaks(payload), "the hidden column left the server: {} {payload}", frame.event);
        let what = (frame.event.as_str(), &frame.place);
        let expected = match what {
            ("card" | "card:from" | "card:local" | "card:endpoint", _) => row.clone(),
            ("phx_reply", wire::Place::Joined) => row.clone(),
            ("phx_reply", wire::Place::Reply(e)) if e == "card:get" || e == "card:reply" => row.clone(),
            ("phx_reply", wire::Place::Reply(e)) if e == "card:json" => json!({"card": row}),
            ("phx_reply", wire::Place::Reply(_)) | ("listing", _) => json!({"rows": [row, row], "newest": row}),
            ("presence_state", _) => {
                let metas = &payload["card"]["metas"];
                assert!(metas.as_array().is_some_and(|m| !m.is_empty()), "{payload}");
                for meta in metas.as_array().into_iter().flatten() {
                    let mut meta = meta.clone();
                    assert!(meta.as_object_mut().and_then(|m| m.remove("phx_ref")).is_some(), "{meta}");
                    assert_eq!(meta, row);
                }
                payload.clone()
            }
            ("presence_diff", _) => payload.clone(),
            other => panic!("unexpected frame {other:?}: {payload}"),
        };
        assert_eq!(payload, &expected, "{what:?}");
        seen.insert(frame.event.clone());
    }
    let every_way = ["card", "card:from", "card:local", "card:endpoint", "listing", "presence_state", "presence_diff"];
    for event in every_way {
        assert!(seen.contains(event), "{event} was not received");
    }
}

/// discuss, both channels: comments (join, refusal, a comment added, a
/// blank one refused, ping with JSON and bytes, pages of older comments
/// and a refused cursor, then everything the storage error answers once
/// its database is closed) and a room (presence with a second member
/// joining and leaving, a shout, a refused join, a shout that does not
/// decode).
async fn drive_discuss() -> Capture {
    let pubsub = PubSub::local();
    let db = support::TempSqlite::new();
    let store =
        discuss::store::Store::connect(&db.url(), discuss::store::Limits::default()).await.expect("SQLite opens");
    let app = std::sync::Arc::new(discuss::App::new(store, pubsub.clone(), None));
    let addr =
        serve(Endpoint::with_state(app.clone()).with_pubsub(pubsub).socket("/socket", discuss::UserSocket)).await;
    let comments = "comments:42";
    let mut a = Wire::connect(addr, "user_id=7").await;
    assert_eq!(a.join(comments, json!({})).await.0, "ok");
    assert_eq!(a.join("comments:abc", json!({})).await.0, "error");
    assert_eq!(a.push(comments, "comment:add", json!({"content": "first!"})).await.0, "ok");
    a.events(comments, "comments:42:new", 1).await;
    assert_eq!(a.push(comments, "comment:add", json!({"content": "   "})).await.0, "error");
    assert_eq!(a.push(comments, "ping", json!({"any": ["thing", 1]})).await.0, "ok");
    assert_eq!(a.push_binary(comments, "ping", &[1, 2, 3]).await, ("ok".to_owned(), Body::Binary(vec![1, 2, 3])));
    assert_eq!(a.push(comments, "comment:add", json!({"content": "second"})).await.0, "ok");
    a.events(comments, "comments:42:new", 2).await;
    let (status, page) = a.push(comments, "comments:before", json!({"limit": 1})).await;
    assert_eq!(status, "ok");
    assert_eq!(page.json()["comments"], json!([{"content": "second"}]));
    let next = page.json()["next"].clone();
    assert!(next.is_string(), "{next}");
    let (status, page) = a.push(comments, "comments:before", json!({"before": next})).await;
    assert_eq!(
        (status.as_str(), page.json().clone()),
        ("ok", json!({"comments": [{"content": "first!"}], "next": null}))
    );
    assert_eq!(a.push(comments, "comments:before", json!({"before": "abc"})).await.0, "error");
    let mut b = Wire::connect(addr, "").await;
    let (_, joined) = b.join(comments, json!({})).await;
    assert_eq!(joined.json()["comments"], json!([{"content": "first!"}, {"content": "second"}]));

    let room = "room:lobby";
    assert_eq!(a.join(room, json!({"name": "ada"})).await.0, "ok");
    a.events(room, "presence_state", 1).await;
    assert_eq!(b.join(room, json!({"name": "bob"})).await.0, "ok");
    b.events(room, "presence_state", 1).await;
    assert_eq!(b.push(room, "shout", json!({"body": {"text": "hi"}})).await.0, "ok");
    assert_eq!(b.push(room, "shout", json!("not an object")).await.0, "error");
    a.events(room, "shout", 1).await;
    b.leave(room).await;
    // Ada's own join, Bob's join, Bob's leave (batched: in as many diffs
    // as the timing makes).
    a.event_until(room, "presence_diff", |diff| diff.json()["leaves"].get("bob").is_some()).await;
    assert_eq!(b.join("room:nameless", json!({})).await.0, "error");

    // The storage error, every way it reaches a client.
    app.comments.close().await;
    assert_eq!(a.push(comments, "comment:add", json!({"content": "lost"})).await.0, "error");
    assert_eq!(a.push(comments, "comments:before", json!({})).await.0, "error");

    let mut capture = capture!(discuss::UserSocket, "discuss");
    capture.add(&a);
    capture.add(&b);
    capture
}

/// The fixtures of `tests/typescript.rs` (`support/typed.rs`): notes (a
/// typed join, typed replies and errors, validation, declared pushes,
/// untyped handlers), lobbies, a hand-written channel.
async fn drive_typed() -> Capture {
    let addr = serve(Endpoint::new().socket("/socket", typed::Typed)).await;
    let notes = "notes:1";
    let mut a = Wire::connect(addr, "").await;
    assert_eq!(a.join(notes, json!({"since": null})).await.0, "ok");
    assert_eq!(a.push(notes, "add", json!({"bodyText": "hello"})).await.0, "ok");
    a.events(notes, "notes:1:new", 1).await;
    assert_eq!(a.push(notes, "add", json!({"bodyText": "full"})).await.0, "error");
    assert_eq!(a.push(notes, "add", json!({"vote": null})).await.0, "error");
    assert_eq!(a.push(notes, "plain", json!({"bodyText": "x", "vote": {"kind": "up"}})).await.0, "ok");
    assert_eq!(a.push(notes, "plain", json!({"bodyText": 1})).await.0, "error");
    assert_eq!(a.push(notes, "unruly", json!({"_x": ""})).await.0, "error");
    a.send(notes, "silent", json!({})).await;
    a.send(notes, "quiet", json!({})).await;
    a.events(notes, "cleared", 2).await;
    assert_eq!(a.push(notes, "raw", json!([1])).await.0, "ok");
    a.send(notes, "opaque", json!({"_x": 1})).await;
    assert_eq!(a.join("lobby", json!({})).await.0, "ok");
    assert_eq!(a.push("lobby", "hello", json!({})).await.0, "ok");
    assert_eq!(a.join("lobby:x", json!({})).await.0, "ok");
    assert_eq!(a.join("raw:1", json!({})).await.0, "ok");
    // Everything sent has been answered or pushed before the last reply.
    assert_eq!(a.push("lobby:x", "hello", json!({})).await.0, "ok");
    let mut capture = capture!(typed::Typed, "typed");
    capture.add(&a);
    capture
}

/// The strict fixture of `tests/typescript.rs`: presence over an `Encode`
/// meta, typed replies and errors, bytes echoed.
async fn drive_clean() -> Capture {
    let addr = serve(Endpoint::new().socket("/socket", typed::Clean)).await;
    let room = "room:a";
    let mut a = Wire::connect(addr, "").await;
    let mut b = Wire::connect(addr, "").await;
    assert_eq!(a.join(room, json!({"since": 1})).await.0, "ok");
    a.events(room, "presence_state", 1).await;
    assert_eq!(b.join(room, json!({"since": null})).await.0, "ok");
    b.events(room, "presence_state", 1).await;
    assert_eq!(a.push(room, "add", json!({"bodyText": "x"})).await.0, "ok");
    assert_eq!(a.push(room, "add", json!({"bodyText": "full"})).await.0, "error");
    assert_eq!(a.push(room, "add", json!({})).await.0, "error");
    a.events(room, "note", 1).await;
    a.events(room, "any", 1).await;
    assert_eq!(a.push(room, "echo", json!({"a": [1]})).await.0, "ok");
    assert_eq!(a.push_binary(room, "echo", &[9]).await.0, "ok");
    b.leave(room).await;
    a.events(room, "presence_diff", 2).await;
    let mut capture = capture!(typed::Clean, "clean");
    capture.add(&a);
    capture.add(&b);
    capture
}

/// A value the board's row type must refuse: the check is not vacuous.
const LEAK: &str = "import type * as M from \"./board.js\";\n\n\
    const leaked: M.ChannelOf<\"board:1\">[\"in\"][\"card:get\"][\"reply\"] = { \"id\": 1, \"owner_token\": \"s3cret\" };\n";

#[tokio::test]
async fn every_frame_sent_is_what_its_typescript_says() {
    let captures = [drive_board().await, drive_discuss().await, drive_typed().await, drive_clean().await];

    // Nothing described with a type went undriven.
    let missing: Vec<String> = captures.iter().flat_map(Capture::missing).collect();
    assert!(missing.is_empty(), "typed places no frame reached; drive them here:\n{}", missing.join("\n"));
    // The examples with no typed place: if one gains one, drive it here.
    for (name, routes) in
        [("chat", route_shapes::<chat::ChatSocket>()), ("relay", route_shapes::<relay::RelaySocket>())]
    {
        let capture = Capture::new(name, routes, String::new());
        let required: Vec<String> = capture.required().iter().map(|r| format!("{r:?}")).collect();
        assert!(required.is_empty(), "{name} now has typed places; drive them in this test: {required:?}");
    }

    let refs: Vec<&Capture> = captures.iter().collect();
    let (code, output, dir) = wire::typecheck(&refs, &[("leak.ts", LEAK.to_owned())]);
    let errors: Vec<&str> = output.lines().filter(|l| l.contains("error TS")).collect();
    // The one error is the planted leak, which proves tsc checked.
    let planted = errors.iter().filter(|l| l.contains("leak.ts(") && l.contains("TS2353")).count();
    let others: Vec<&&str> = errors.iter().filter(|l| !l.contains("leak.ts(")).collect();
    assert!(
        others.is_empty() && planted == 1 && code == 2,
        "tsc (exit {code}) finds frames that are not what their TypeScript says (files in {}):\n{output}",
        dir.display()
    );
    let frames: usize = captures.iter().map(|c| c.frames.len()).sum();
    assert!(frames > 60, "{frames} frames checked");
    if std::env::var_os("WIRE_TYPES_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
