//! Raw-frame abuse over a real socket, panics in every callback, and slow
//! consumers under a flood.
//!
//! After every abuse case a fresh connection answers a heartbeat, and so does
//! the abused one when the protocol leaves it open; the server forgets the
//! connection, its channels and subscriptions; and, across the whole batch,
//! memory and tokio tasks return to their baseline.
//!
//! Tests that measure process figures hold `SERIAL`, so the test harness's
//! parallel threads do not blur them.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abuse_helpers::{fds, logs, mb, rss, settle, tasks, Got, Raw, SERIAL};
use futures_util::StreamExt;
use phx_channels_runtime::channel::{Channel, Info, JoinError, Route, Routes, Terminate};
use phx_channels_runtime::connect::{Connect, ConnectInfo, Params, Refuse};
use phx_channels_runtime::crash::Crash;
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::Presence;
use phx_channels_runtime::protocol::Payload;
use phx_channels_runtime::reply::Reply;
use phx_channels_runtime::router::Topic;
use phx_channels_runtime::socket::Socket;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve, Server};

/// The abuse server: the support socket with a 1 MiB frame limit.
async fn abuse_server() -> Server {
    serve(SocketOptions { max_frame_size: 1 << 20, ..SocketOptions::default() }).await
}

/// The checks after every case: a fresh connection is served, the abused
/// one too if still open, and nothing of either is left once they close.
async fn after_case(s: &Server, name: &str, abused: Option<Raw>, topics: &[&str]) {
    let mut fresh = Raw::v2(s.addr).await;
    fresh.heartbeat("fresh").await;
    if let Some(mut abused) = abused {
        abused.heartbeat("same").await;
        abused.close().await;
    }
    fresh.close().await;
    settle(&s.endpoint, topics).await;
    println!("case ok: {name}");
}

async fn closed_with(s: &Server, name: &str, frame: impl Into<String>, code: u16) {
    let mut c = Raw::v2(s.addr).await;
    c.text(frame).await;
    assert_eq!(c.close_code().await, Some(code), "{name}");
    after_case(s, name, None, &[]).await;
}

// ------------------------------------------------------------ the cases

async fn invalid_utf8(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    c.raw_text_frame(b"[\"1\",\"1\",\"echo:\xff\xfe\",\"phx_join\",{}]".to_vec()).await;
    assert_eq!(c.close_code().await, Some(1007));
    // a lone continuation byte, a truncated sequence, an overlong encoding
    for bad in [&b"\x80"[..], b"\xe2\x82", b"\xc0\xaf"] {
        let mut c = Raw::v2(s.addr).await;
        c.raw_text_frame(bad.to_vec()).await;
        assert_eq!(c.close_code().await, Some(1007), "{bad:?}");
    }
    after_case(s, "invalid UTF-8 text frame -> 1007", None, &[]).await;
}

async fn invalid_json(s: &Server) {
    for bad in ["this is not json", "", "[", "[\"1\",\"1\",\"t\",\"e\",{]", "[\"1\",\"1\",\"t\",\"e\",{}] x", "\u{0}"] {
        closed_with(s, &format!("invalid JSON {bad:?} -> 1007"), bad, 1007).await;
    }
}

async fn wrong_arity(s: &Server) {
    for bad in [r#"["1","1","echo:a","phx_join"]"#, "[]", r#"["1"]"#, "{}"] {
        closed_with(s, &format!("wrong arity {bad} -> 1007"), bad, 1007).await;
    }
    // extra elements are ignored, as Phoenix does: the heartbeat is acked
    let mut c = Raw::v2(s.addr).await;
    c.text(r#"[null,"6","phoenix","heartbeat",{},"extra",[1]]"#).await;
    assert_eq!(c.json().await, json!([null, "6", "phoenix", "phx_reply", {"status": "ok", "response": {}}]));
    after_case(s, "six elements: extra ignored", Some(c), &[]).await;
}

async fn wrong_types(s: &Server) {
    for bad in [
        r#"["1","1",5,"phx_join",{}]"#,
        r#"["1","1","echo:t",{"e":1},{}]"#,
        r#"[1,"1","echo:t","phx_join",{}]"#,
        r#"["1",[],"echo:t","phx_join",{}]"#,
        r#"["1","1",null,"phx_join",{}]"#,
        r#"{"topic":"echo:t","event":"phx_join","payload":{},"ref":"1"}"#,
        r#""a string""#,
        "42",
    ] {
        closed_with(s, &format!("wrong types {bad} -> 1007"), bad, 1007).await;
    }
}

async fn huge_numbers(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    assert_eq!(c.join("1", "echo:huge").await[4]["status"], "ok");
    let payload = r#"{"big":1e400,"int":1180591620717411303424,"neg":-1e400,"tiny":1e-400,"long":123456789012345678901234567890123456789}"#;
    c.text(format!(r#"["1","2","echo:huge","ping",{payload}]"#)).await;
    // ping echoes the payload as it arrived (the raw JSON is kept, not parsed)
    let reply = c.next_text().await;
    assert_eq!(reply, format!(r#"["1","2","echo:huge","phx_reply",{{"status":"ok","response":{payload}}}]"#));
    // as a join payload too
    c.text(format!(r#"["3","3","echo:huge2","phx_join",{payload}]"#)).await;
    assert!(c.next_text().await.contains("1e400"));
    // a handler that parses the payload (shout decodes into a Value, which
    // cannot hold 1e400): Echo returns Err, which crashes that channel only
    c.text(format!(r#"["1","4","echo:huge","shout",{payload}]"#)).await;
    assert_eq!(c.json().await, json!(["1", "1", "echo:huge", "phx_error", {"reason": "channel_crash"}]));
    c.text(r#"["3","5","echo:huge2","ping",{"n":2e308}]"#).await;
    assert!(c.next_text().await.contains("2e308"));
    after_case(s, "huge numbers", Some(c), &["echo:huge", "echo:huge2"]).await;
}

fn nested(depth: usize, open: &str, close: &str, leaf: &str) -> String {
    format!("{}{leaf}{}", open.repeat(depth), close.repeat(depth))
}

async fn deep_nesting(s: &Server) {
    // serde_json skips a raw payload without recursing, so any depth is
    // accepted as a payload and echoed as it came; a handler that parses it
    // meets serde_json's recursion limit (128) and fails, no stack overflow.
    let mut c = Raw::v2(s.addr).await;
    c.join("1", "echo:deep").await;
    for (i, (name, payload)) in [
        ("100 nested arrays", nested(100, "[", "]", "1")),
        ("10 000 nested arrays", nested(10_000, "[", "]", "")),
        ("10 000 nested objects", nested(10_000, r#"{"a":"#, "}", "1")),
        ("200 000 nested arrays", nested(200_000, "[", "]", "")),
    ]
    .into_iter()
    .enumerate()
    {
        c.text(format!(r#"["1","p{i}","echo:deep","ping",{payload}]"#)).await;
        let reply = c.next_text().await;
        let expected = format!(r#"["1","p{i}","echo:deep","phx_reply",{{"status":"ok","response":{payload}}}]"#);
        assert!(reply == expected, "{name}: echoed {} bytes, expected {}", reply.len(), expected.len());
        println!("case ok: deep nesting: {name} echoed");
    }
    // parsed by the handler (shout decodes into a Value): the handler's Err
    // crashes that channel only
    c.text(format!(r#"["1","s","echo:deep","shout",{}]"#, nested(10_000, "[", "]", ""))).await;
    assert_eq!(c.json().await, json!(["1", "1", "echo:deep", "phx_error", {"reason": "channel_crash"}]));
    // as a join payload: echoed by the join reply
    c.text(format!(r#"["2","2","echo:deep2","phx_join",{}]"#, nested(10_000, "[", "]", ""))).await;
    assert!(c.next_text().await.starts_with(r#"["2","2","echo:deep2","phx_reply",{"status":"ok","response":[[[["#));
    // the V1 serializer too
    let mut v1 = Raw::connect(s.addr, "vsn=1.0.0").await;
    v1.text(format!(r#"{{"topic":"t","event":"e","payload":{},"ref":"9"}}"#, nested(10_000, "[", "]", ""))).await;
    assert!(v1.next_text().await.contains("unmatched topic"));
    v1.close().await;
    after_case(s, "deep nesting", Some(c), &["echo:deep", "echo:deep2"]).await;
    // deep nesting where a string belongs, and unclosed nesting: malformed
    for (name, frame) in [
        ("nested topic", format!(r#"["1","1",{},"ping",{{}}]"#, nested(10_000, "[", "]", ""))),
        ("unclosed nesting", format!(r#"["1","1","echo:deep","ping",{}"#, "[".repeat(100_000))),
        ("nested frame", nested(100_000, "[", "]", "")),
    ] {
        closed_with(s, &format!("deep nesting: {name} -> 1007"), frame, 1007).await;
    }
}

async fn topic_not_joined(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    let unmatched = |r: &str, t: &str| json!([null, r, t, "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}]);
    c.text(r#"["1","2","echo:nj","ping",{}]"#).await;
    assert_eq!(c.json().await, unmatched("2", "echo:nj"));
    c.text(r#"["1","3","no:route","ping",{}]"#).await;
    assert_eq!(c.json().await, unmatched("3", "no:route"));
    c.text(r#"[null,null,"","",null]"#).await;
    assert_eq!(
        c.json().await,
        json!([null, null, "", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
    );
    after_case(s, "topic not joined -> unmatched topic", Some(c), &["echo:nj"]).await;
}

async fn reserved_events(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    c.join("1", "echo:res").await;
    let unknown = |r: &str| json!(["1", r, "echo:res", "phx_reply", {"status": "error", "response": {"reason": "unknown event"}}]);
    for (i, event) in ["phx_reply", "phx_close", "phx_error", "heartbeat"].iter().enumerate() {
        let r = (10 + i).to_string();
        c.text(format!(r#"["1","{r}","echo:res","{event}",{{"status":"ok","response":{{}}}}]"#)).await;
        assert_eq!(c.json().await, unknown(&r), "{event}");
    }
    // the channel is alive after all of them
    c.text(r#"["1","20","echo:res","ping",{"alive":true}]"#).await;
    assert_eq!(
        c.json().await,
        json!(["1", "20", "echo:res", "phx_reply", {"status": "ok", "response": {"alive": true}}])
    );
    // heartbeat on a topic not joined; a join and other events on `phoenix`
    c.text(r#"[null,"21","echo:other","heartbeat",{}]"#).await;
    assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
    c.text(r#"["22","22","phoenix","phx_join",{}]"#).await;
    assert_eq!(
        c.json().await,
        json!([null, "22", "phoenix", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
    );
    c.text(r#"[null,"23","phoenix","phx_reply",{}]"#).await;
    assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
    c.text(r#"["x","24","phoenix","heartbeat",{"junk":[1,2]}]"#).await;
    assert_eq!(c.json().await, json!([null, "24", "phoenix", "phx_reply", {"status": "ok", "response": {}}]));
    after_case(s, "reserved events from the client", Some(c), &["echo:res"]).await;
}

async fn push_before_join(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    c.text(r#"["1","1","echo:pre","ping",{}]"#).await;
    assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
    c.text(r#"["1","2","echo:pre","phx_leave",{}]"#).await;
    assert_eq!(c.json().await, json!(["1", "2", "echo:pre", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(c.join("3", "echo:pre").await[4]["status"], "ok");
    c.text(r#"["3","4","echo:pre","ping",{}]"#).await;
    assert_eq!(c.json().await[4]["status"], "ok");
    after_case(s, "push before join", Some(c), &["echo:pre"]).await;
}

async fn leave_twice(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    c.join("1", "echo:twice").await;
    c.text(r#"["1","2","echo:twice","phx_leave",{}]"#).await;
    c.text(r#"["1","3","echo:twice","phx_leave",{}]"#).await;
    let frames = [c.json().await, c.json().await, c.json().await];
    assert_eq!(frames[0], json!(["1", "2", "echo:twice", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(frames[1], json!(["1", "1", "echo:twice", "phx_close", {}]));
    // the second leave finds nothing joined: ok, and no second phx_close
    assert_eq!(frames[2], json!(["1", "3", "echo:twice", "phx_reply", {"status": "ok", "response": {}}]));
    c.heartbeat("hb").await;
    assert_eq!(s.endpoint.metrics().channels_open, 0);
    assert_eq!(s.endpoint.pubsub().subscriber_count("echo:twice"), 0);
    after_case(s, "leave twice", Some(c), &["echo:twice"]).await;
}

/// Sends `n` joins of distinct topics pipelined (one flush), then reads the
/// `n` replies; returns (ok, too many channels, too many joins).
async fn join_flood(c: &mut Raw, prefix: &str, n: usize) -> (usize, usize, usize) {
    for i in 0..n {
        c.feed(format!(r#"["{i}","{i}","echo:{prefix}{i}","phx_join",{{}}]"#)).await;
    }
    c.flush().await;
    let (mut ok, mut channels, mut rate) = (0, 0, 0);
    let mut replies = 0;
    while replies < n {
        let frame = c.json().await;
        if frame[3] != "phx_reply" {
            continue;
        }
        replies += 1;
        match (frame[4]["status"].as_str(), frame[4]["response"]["reason"].as_str()) {
            (Some("ok"), _) => ok += 1,
            (Some("error"), Some("too many channels joined")) => channels += 1,
            (Some("error"), Some("too many joins")) => rate += 1,
            _ => panic!("unexpected join reply {frame}"),
        }
    }
    (ok, channels, rate)
}

async fn flood_of_joins(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    let started = Instant::now();
    let (ok, channels, rate) = join_flood(&mut c, "flood", 1000).await;
    println!(
        "join flood: 1000 joins in {:?}: {ok} ok, {channels} over the channel cap, {rate} over the rate",
        started.elapsed()
    );
    assert_eq!(ok, 100, "the channel cap");
    assert_eq!(ok + channels + rate, 1000);
    assert!(rate >= 700, "joins over 200/s are refused");
    assert_eq!(s.endpoint.metrics().channels_open, 100);
    c.heartbeat("after flood").await;
    // the joined channels work
    c.text(r#"["5","x","echo:flood5","ping",{}]"#).await;
    assert_eq!(c.json().await[4]["status"], "ok");
    let topics: Vec<String> = (0..1000).map(|i| format!("echo:flood{i}")).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    after_case(s, "join flood (1000 fast joins)", Some(c), &topics).await;
}

/// `unlimited` has the join rate limit off, so every join reaches the cap.
async fn ten_thousand_topics(s: &Server, unlimited: &Server) {
    let mut c = Raw::v2(unlimited.addr).await;
    let before = rss();
    let (ok, channels, rate) = join_flood(&mut c, "many", 10_000).await;
    assert_eq!((ok, channels, rate), (100, 9_900, 0));
    c.heartbeat("after 10 000").await;
    c.close().await;
    // and, on a new socket, 10 000 distinct topics joined and left one
    // after another
    let mut c = Raw::v2(unlimited.addr).await;
    for i in 0..10_000 {
        c.feed(format!(r#"["j{i}","j{i}","echo:cycle{i}","phx_join",{{}}]"#)).await;
        c.feed(format!(r#"["j{i}","l{i}","echo:cycle{i}","phx_leave",{{}}]"#)).await;
        if i % 100 == 99 {
            c.flush().await;
            // 3 frames per topic: join reply, leave reply, phx_close
            for _ in 0..300 {
                let f = c.json().await;
                assert!(f[4]["status"] != "error", "{f}");
            }
        }
    }
    c.heartbeat("after cycling").await;
    let during = rss();
    println!("10 000 topics on one socket: RSS {:.1} MB -> {:.1} MB", mb(before), mb(during));
    c.close().await;
    let many: Vec<String> = (0..10_000).map(|i| format!("echo:many{i}")).collect();
    let cycle: Vec<String> = (0..10_000).map(|i| format!("echo:cycle{i}")).collect();
    let all: Vec<&str> = many.iter().chain(&cycle).map(String::as_str).collect();
    let m = settle(&unlimited.endpoint, &all).await;
    assert_eq!(m.joins, 10_100);
    after_case(s, "10 000 topics on one socket", None, &[]).await;
}

async fn oversized_frame(s: &Server) {
    let mut c = Raw::v2(s.addr).await;
    c.join("1", "echo:big").await;
    let blob = "x".repeat(2 << 20);
    c.text(format!(r#"["1","2","echo:big","ping",{{"b":"{blob}"}}]"#)).await;
    assert_eq!(c.close_code().await, Some(1009));
    // a binary one too
    let mut b = Raw::v2(s.addr).await;
    b.binary(vec![0; 2 << 20]).await;
    assert_eq!(b.close_code().await, Some(1009));
    after_case(s, "oversized frame -> 1009", None, &["echo:big"]).await;
}

async fn malformed_binary(s: &Server) {
    for bad in [vec![], vec![0, 0, 0], vec![1, 0, 0, 0, 0], vec![0, 9, 0, 0, 0, b'a'], vec![0, 1, 0, 0, 0, 0xff]] {
        let mut c = Raw::v2(s.addr).await;
        c.binary(bad.clone()).await;
        assert_eq!(c.close_code().await, Some(1007), "{bad:?}");
    }
    let mut v1 = Raw::connect(s.addr, "vsn=1.0.0").await;
    v1.binary(vec![0, 0, 0, 1, 1, b't', b'e']).await;
    assert_eq!(v1.close_code().await, Some(1003));
    // a well-formed binary push to a topic not joined is answered, not closed
    let mut c = Raw::v2(s.addr).await;
    let mut frame = vec![0u8, 1, 1, 6, 4];
    frame.extend_from_slice(b"12echo:xping\x00\x01");
    c.binary(frame).await;
    assert!(c.next_text().await.contains("unmatched topic"));
    after_case(s, "malformed binary frames -> 1007 / V1 -> 1003", Some(c), &[]).await;
}

/// Every case once.
async fn all_cases(s: &Server) {
    invalid_utf8(s).await;
    invalid_json(s).await;
    wrong_arity(s).await;
    wrong_types(s).await;
    huge_numbers(s).await;
    deep_nesting(s).await;
    topic_not_joined(s).await;
    reserved_events(s).await;
    push_before_join(s).await;
    leave_twice(s).await;
    flood_of_joins(s).await;
    oversized_frame(s).await;
    malformed_binary(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frame_abuse_leaves_the_server_serving_and_memory_at_its_baseline() {
    let _serial = SERIAL.lock().await;
    let s = abuse_server().await;
    let unlimited = serve(SocketOptions { max_joins_per_second: 0, ..SocketOptions::default() }).await;
    // A first round warms up the allocator, tokio and the server; and the
    // second server, whose idle watchdog starts with its first connection.
    all_cases(&s).await;
    let mut warm = Raw::v2(unlimited.addr).await;
    warm.heartbeat("warm-up").await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, tasks0, fds0) = (rss(), tasks(), fds());
    for _ in 0..3 {
        all_cases(&s).await;
    }
    ten_thousand_topics(&s, &unlimited).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = settle(&s.endpoint, &[]).await;
    let (rss1, tasks1, fds1) = (rss(), tasks(), fds());
    println!(
        "abuse batch: RSS {:.1} MB -> {:.1} MB; tasks {tasks0} -> {tasks1}; fds {fds0} -> {fds1}; \
         malformed_frames={} connections_accepted={}",
        mb(rss0),
        mb(rss1),
        m.malformed_frames,
        m.connections_accepted
    );
    assert!(rss1 < rss0 + 8 * 1024 * 1024, "RSS grew from {:.1} MB to {:.1} MB", mb(rss0), mb(rss1));
    assert!(tasks1 <= tasks0, "tasks grew from {tasks0} to {tasks1}");
    assert!(fds1 <= fds0 + 2, "fds grew from {fds0} to {fds1}");
}

// ------------------------------------------------------------ panics everywhere

struct BombSocket;

impl Connect for BombSocket {
    type State = ();
    type Assigns = ();

    async fn connect(params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        match params.get("token") {
            Some("panic") => panic!("bomb connect panics on purpose"),
            _ => Ok(()),
        }
    }
}

impl Routes for BombSocket {
    const ROUTES: &'static [Route<Self>] = &[Route::new::<Bomb>("bomb:*")];
}

/// A message for `handle_info`.
struct Detonate;

/// Panics wherever its topic or event says: `handle_out` on the intercepted
/// `boom` broadcast, `handle_info` on [`Detonate`], `terminate` on topics
/// `bomb:terminate*`, `join` on `bomb:join`. Tracks presence on join, so a
/// crash must untrack it.
struct Bomb;

impl Channel for Bomb {
    type Socket = BombSocket;

    const INTERCEPTS: &'static [&'static str] = &["boom", "fine"];

    async fn join(
        topic: Topic,
        _payload: Payload,
        socket: &mut Socket<BombSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        Presence::track(socket, "me", json!({"topic": topic.as_str()}))?;
        if topic.rest() == "join" {
            panic!("bomb join panics on purpose");
        }
        Ok((Payload::empty(), Bomb))
    }

    async fn handle_in(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<BombSocket>,
    ) -> Result<Reply, Crash> {
        match event {
            "ping" => Ok(Reply::ok(payload)),
            "detonate" => {
                socket.channel_ref().send(Detonate)?;
                Ok(Reply::ok(json!({})))
            }
            "boom" => panic!("bomb handle_in panics on purpose"),
            _ => Ok(Reply::unknown_event()),
        }
    }

    async fn handle_out(
        &mut self,
        event: &str,
        payload: Payload,
        socket: &mut Socket<BombSocket>,
    ) -> Result<Reply, Crash> {
        if event == "boom" {
            panic!("bomb handle_out panics on purpose");
        }
        socket.push(event, payload)?;
        Ok(Reply::none())
    }

    async fn handle_info(&mut self, info: Info, _socket: &mut Socket<BombSocket>) -> Result<Reply, Crash> {
        match info.downcast::<Detonate>() {
            Ok(Detonate) => panic!("bomb handle_info panics on purpose"),
            Err(other) => Err(format!("unexpected {}", other.type_name()).into()),
        }
    }

    async fn terminate(&mut self, _reason: &Terminate, socket: &mut Socket<BombSocket>) {
        if socket.topic().rest().starts_with("terminate") {
            panic!("bomb terminate panics on purpose");
        }
    }
}

/// The next frame that is not a presence broadcast (Bomb tracks presence).
async fn frame(c: &mut Raw) -> serde_json::Value {
    loop {
        let f = c.json().await;
        if !matches!(f[3].as_str(), Some("presence_diff" | "presence_state")) {
            return f;
        }
    }
}

async fn bomb_join(c: &mut Raw, jr: &str, topic: &str) -> serde_json::Value {
    c.text(format!(r#"["{jr}","{jr}","{topic}","phx_join",{{}}]"#)).await;
    frame(c).await
}

async fn bomb_server() -> (Endpoint, std::net::SocketAddr) {
    let endpoint = Endpoint::new().socket("/socket", BombSocket);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(endpoint.clone().serve_on(listener));
    (endpoint, addr)
}

fn no_presence(endpoint: &Endpoint, topic: &str) {
    let list = Presence::list_topic(endpoint.pubsub(), topic);
    assert!(list.as_object().is_none_or(|o| o.is_empty()), "presence left behind on {topic}: {list}");
}

async fn wait_no_presence(endpoint: &Endpoint, topic: &str) {
    for _ in 0..100 {
        let list = Presence::list_topic(endpoint.pubsub(), topic);
        if list.as_object().is_none_or(|o| o.is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    no_presence(endpoint, topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_any_callback_is_contained_like_a_phoenix_crash() {
    let _serial = SERIAL.lock().await;
    let logs = logs();
    let (endpoint, addr) = bomb_server().await;
    // The first presence starts the endpoint's tracker task: warm it up
    // before counting tasks.
    let mut warm = Raw::v2(addr).await;
    assert_eq!(bomb_join(&mut warm, "1", "bomb:warm").await[4]["status"], "ok");
    warm.close().await;
    settle(&endpoint, &["bomb:warm"]).await;
    wait_no_presence(&endpoint, "bomb:warm").await;
    let tasks0 = tasks();

    // connect: HTTP 500, logged, nothing left open
    match tokio_tungstenite::connect_async(format!("ws://{addr}/socket/websocket?vsn=2.0.0&token=panic")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 500),
        other => panic!("expected HTTP 500, got {:?}", other.map(|_| ())),
    }
    logs.wait_for(&["connect panicked", "bomb connect panics on purpose"]).await;
    assert_eq!(endpoint.metrics().connections_open, 0);

    let mut c = Raw::v2(addr).await;
    let mut watcher = Raw::v2(addr).await;

    // join: "join crashed", logged, no channel, subscription or presence
    assert_eq!(
        bomb_join(&mut c, "1", "bomb:join").await,
        json!(["1", "1", "bomb:join", "phx_reply", {"status": "error", "response": {"reason": "join crashed"}}])
    );
    logs.wait_for(&["join crashed", "bomb join panics on purpose"]).await;
    assert_eq!(endpoint.pubsub().subscriber_count("bomb:join"), 0);
    // (the presence tracked before the panic is left behind: see
    // `presence_tracked_by_a_join_that_panics_is_untracked`)

    // handle_in: phx_error with the join_ref in both ref fields
    assert_eq!(bomb_join(&mut c, "2", "bomb:in").await[4]["status"], "ok");
    assert!(!Presence::list_topic(endpoint.pubsub(), "bomb:in").as_object().unwrap().is_empty());
    c.text(r#"["2","3","bomb:in","boom",{}]"#).await;
    assert_eq!(frame(&mut c).await, json!(["2", "2", "bomb:in", "phx_error", {"reason": "channel_crash"}]));
    logs.wait_for(&["channel crashed", "bomb handle_in panics on purpose"]).await;
    wait_no_presence(&endpoint, "bomb:in").await;

    // handle_out: an intercepted broadcast crashes each subscriber's channel
    assert_eq!(bomb_join(&mut c, "4", "bomb:out").await[4]["status"], "ok");
    assert_eq!(bomb_join(&mut watcher, "40", "bomb:out").await[4]["status"], "ok");
    endpoint.broadcast("bomb:out", "boom", json!({"x": 1})).unwrap();
    assert_eq!(frame(&mut c).await, json!(["4", "4", "bomb:out", "phx_error", {"reason": "channel_crash"}]));
    assert_eq!(frame(&mut watcher).await, json!(["40", "40", "bomb:out", "phx_error", {"reason": "channel_crash"}]));
    logs.wait_for(&["channel crashed", "bomb handle_out panics on purpose"]).await;
    wait_no_presence(&endpoint, "bomb:out").await;
    assert_eq!(endpoint.pubsub().subscriber_count("bomb:out"), 0);

    // handle_info
    assert_eq!(bomb_join(&mut c, "5", "bomb:info").await[4]["status"], "ok");
    c.text(r#"["5","6","bomb:info","detonate",{}]"#).await;
    let frames = [frame(&mut c).await, frame(&mut c).await];
    assert_eq!(frames[0], json!(["5", "6", "bomb:info", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(frames[1], json!(["5", "5", "bomb:info", "phx_error", {"reason": "channel_crash"}]));
    logs.wait_for(&["channel crashed", "bomb handle_info panics on purpose"]).await;
    wait_no_presence(&endpoint, "bomb:info").await;

    // terminate: the leave is still answered and closed, the panic logged
    assert_eq!(bomb_join(&mut c, "7", "bomb:terminate").await[4]["status"], "ok");
    c.text(r#"["7","8","bomb:terminate","phx_leave",{}]"#).await;
    assert_eq!(frame(&mut c).await, json!(["7", "8", "bomb:terminate", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(frame(&mut c).await, json!(["7", "7", "bomb:terminate", "phx_close", {}]));
    logs.wait_for(&["terminate crashed", "bomb terminate panics on purpose"]).await;
    wait_no_presence(&endpoint, "bomb:terminate").await;
    // terminate panicking after a crash, and on connection close
    assert_eq!(bomb_join(&mut c, "9", "bomb:terminate2").await[4]["status"], "ok");
    c.text(r#"["9","10","bomb:terminate2","boom",{}]"#).await;
    assert_eq!(frame(&mut c).await, json!(["9", "9", "bomb:terminate2", "phx_error", {"reason": "channel_crash"}]));
    assert_eq!(bomb_join(&mut c, "11", "bomb:terminate3").await[4]["status"], "ok");

    // the socket is usable and every crashed topic rejoins
    c.heartbeat("alive").await;
    for (jr, topic) in [("20", "bomb:in"), ("21", "bomb:out"), ("22", "bomb:info"), ("23", "bomb:terminate")] {
        assert_eq!(bomb_join(&mut c, jr, topic).await[4]["status"], "ok", "{topic}");
        c.text(format!(r#"["{jr}","p{jr}","{topic}","ping",{{"n":1}}]"#)).await;
        assert_eq!(frame(&mut c).await[4]["response"], json!({"n": 1}));
    }
    // a non-panicking intercepted event still flows after the crash
    endpoint.broadcast("bomb:out", "fine", json!({})).unwrap();
    assert_eq!(frame(&mut c).await, json!(["21", null, "bomb:out", "fine", {}]));
    assert_eq!(endpoint.metrics().channels_open, 5);

    c.close().await;
    watcher.close().await;
    let topics =
        ["bomb:join", "bomb:in", "bomb:out", "bomb:info", "bomb:terminate", "bomb:terminate2", "bomb:terminate3"];
    let m = settle(&endpoint, &topics).await;
    for topic in &topics[1..] {
        wait_no_presence(&endpoint, topic).await;
    }
    assert_eq!(m.join_crashes, 1);
    assert_eq!(m.channel_crashes, 5);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let tasks1 = tasks();
    println!("panics: tasks {tasks0} -> {tasks1}; metrics {m:?}");
    assert!(tasks1 <= tasks0, "tasks leaked: {tasks0} -> {tasks1}");
}

/// Phoenix runs `join` in the channel process: whatever it tracked is
/// untracked when a crashing or refusing join ends that process.
#[tokio::test]
async fn presence_tracked_by_a_join_that_panics_is_untracked() {
    // The tests that measure RSS measure the whole process: none runs beside them.
    let _serial = SERIAL.lock().await;
    let (endpoint, addr) = bomb_server().await;
    let mut c = Raw::v2(addr).await;
    assert_eq!(c.join("1", "bomb:join").await[4]["response"]["reason"], "join crashed");
    c.close().await;
    settle(&endpoint, &["bomb:join"]).await;
    wait_no_presence(&endpoint, "bomb:join").await;
}

// ------------------------------------------------------------ slow consumers

struct FloodFigures {
    /// Messages per second each reader received, on average.
    per_reader: f64,
    elapsed: Duration,
    peak_rss: u64,
}

/// Broadcasts `total` messages of `size` bytes to `readers` reading
/// subscribers (and one that never reads if `stalled`), `batch` at a time,
/// each batch once every reader has the previous one: the readers' full
/// rate. Returns the figures and the stalled client, if any.
async fn flood(
    s: &Server,
    topic: &str,
    readers: usize,
    stalled: bool,
    total: u64,
    size: usize,
    batch: u64,
) -> (FloodFigures, Option<Raw>) {
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..readers).map(|_| AtomicU64::new(0)).collect());
    let mut handles = Vec::new();
    for i in 0..readers {
        let mut c = Raw::v2(s.addr).await;
        assert_eq!(c.join("1", topic).await[4]["status"], "ok");
        let received = received.clone();
        handles.push(tokio::spawn(async move {
            let mut n = 0;
            while n < total {
                match c.ws.next().await {
                    Some(Ok(m)) if m.is_text() => {
                        n += 1;
                        received[i].store(n, Ordering::Release);
                    }
                    Some(Ok(_)) => {}
                    other => panic!("reader {i} lost its connection after {n}: {other:?}"),
                }
            }
            c
        }));
    }
    let stalled = if stalled {
        let mut c = Raw::v2(s.addr).await;
        assert_eq!(c.join("1", topic).await[4]["status"], "ok");
        Some(c)
    } else {
        None
    };
    let blob = "x".repeat(size);
    let payload = Payload::from(json!({"b": blob}));
    let started = Instant::now();
    let mut peak_rss = 0;
    let mut sent = 0;
    while sent < total {
        for _ in 0..batch.min(total - sent) {
            s.endpoint.pubsub().broadcast(topic, "blob", payload.clone()).unwrap();
            sent += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while received.iter().any(|r| r.load(Ordering::Acquire) < sent) {
            assert!(Instant::now() < deadline, "readers stopped receiving at {sent}");
            tokio::task::yield_now().await;
        }
        if sent % (batch * 20) == 0 {
            peak_rss = peak_rss.max(rss());
        }
    }
    let elapsed = started.elapsed();
    for h in handles {
        h.await.unwrap().close().await;
    }
    let per_reader = total as f64 / elapsed.as_secs_f64();
    (FloodFigures { per_reader, elapsed, peak_rss: peak_rss.max(rss()) }, stalled)
}

async fn slow_consumer(total: u64, size: usize) {
    let _serial = SERIAL.lock().await;
    let logs = logs();
    let s = serve(SocketOptions { max_outbound_bytes: 256 * 1024, ..SocketOptions::default() }).await;
    // warm-up, then the baseline
    flood(&s, "echo:warm", 10, false, 2_000, size, 100).await;
    settle(&s.endpoint, &["echo:warm"]).await;
    let rss0 = rss();

    let (alone, _) = flood(&s, "echo:alone", 10, false, total, size, 100).await;
    settle(&s.endpoint, &["echo:alone"]).await;
    let (with_stalled, stalled) = flood(&s, "echo:stalled", 10, true, total, size, 100).await;

    // the stalled client was cut off: it finds a 1008 close (or a cut
    // connection) after fewer frames than were sent
    let mut stalled = stalled.unwrap();
    let mut delivered = 0u64;
    let code = loop {
        match stalled.next_within(Duration::from_secs(10)).await {
            Got::Text(_) => delivered += 1,
            Got::Closed(code) => break code,
            other => panic!("the stalled client was not disconnected: {other:?} after {delivered} frames"),
        }
    };
    assert!(matches!(code, Some(1008) | None), "closed with {code:?}");
    assert!(delivered < total, "a stalled consumer cannot get everything");
    let line = logs.wait_for(&["fell too far behind"]).await;
    let m = settle(&s.endpoint, &["echo:stalled"]).await;
    assert!(m.slow_consumers >= 1);
    let flooded = total * (size as u64 + 40);
    println!(
        "slow consumer: {total} x {size} B broadcasts ({:.0} MB per subscriber), 10 readers, max_outbound_bytes 256 KiB\n\
         \x20 alone:        {:>8.0} msg/s per reader ({:>6.1} MB/s), {:?}, peak RSS {:.1} MB\n\
         \x20 with stalled: {:>8.0} msg/s per reader ({:>6.1} MB/s), {:?}, peak RSS {:.1} MB\n\
         \x20 baseline RSS {:.1} MB; the stalled client got {delivered} frames, then close {code:?}; log: {line}",
        mb(flooded),
        alone.per_reader,
        alone.per_reader * size as f64 / 1e6,
        alone.elapsed,
        mb(alone.peak_rss),
        with_stalled.per_reader,
        with_stalled.per_reader * size as f64 / 1e6,
        with_stalled.elapsed,
        mb(with_stalled.peak_rss),
        mb(rss0),
    );
    // memory stays bounded: far less than what the stalled client missed
    assert!(
        with_stalled.peak_rss < rss0 + flooded / 2,
        "peak RSS {:.1} MB over a baseline of {:.1} MB",
        mb(with_stalled.peak_rss),
        mb(rss0)
    );
    // the others keep their rate (generous: timing on a shared machine)
    assert!(
        with_stalled.per_reader > alone.per_reader * 0.5,
        "readers slowed from {:.0} to {:.0} msg/s",
        alone.per_reader,
        with_stalled.per_reader
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_consumer_is_disconnected_and_the_others_keep_their_rate() {
    slow_consumer(16_000, 2048).await;
}

/// The long version, by hand:
/// `cargo test -p phx-channels-runtime --release --test abuse -- --ignored --nocapture slow_consumer_long`
/// (FLOOD_MESSAGES, FLOOD_SIZE to change the flood).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long; run by hand"]
async fn slow_consumer_long() {
    let total = std::env::var("FLOOD_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let size = std::env::var("FLOOD_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(2048);
    slow_consumer(total, size).await;
}

// ------------------------------------------------------------ found while abusing

/// A rejoin refused by the joins-per-second limit should leave the channel
/// already joined on that topic alone (the client asked to rejoin, the
/// server said no): today the old channel is displaced (phx_close) before
/// the limit is checked, so the client ends with no channel at all.
#[tokio::test]
async fn a_rate_limited_rejoin_keeps_the_joined_channel() {
    // The tests that measure RSS measure the whole process: none runs beside them.
    let _serial = SERIAL.lock().await;
    let s = serve(SocketOptions { max_joins_per_second: 2, ..SocketOptions::default() }).await;
    let mut c = Raw::v2(s.addr).await;
    assert_eq!(c.join("1", "echo:keep").await[4]["status"], "ok");
    assert_eq!(c.join("2", "echo:other").await[4]["status"], "ok");
    // third join within the second: refused
    assert_eq!(c.join("3", "echo:keep").await[4]["response"]["reason"], "too many joins");
    c.text(r#"["1","4","echo:keep","ping",{"still":"here"}]"#).await;
    assert_eq!(
        c.json().await,
        json!(["1", "4", "echo:keep", "phx_reply", {"status": "ok", "response": {"still": "here"}}])
    );
}

/// A connect query is parsed before `connect` (no authentication needed),
/// so it must cost linear time: ~9 000 keys (hyper caps the URI at 64 KB;
/// longer is 414) are answered at once. Parsing was once quadratic here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_query_at_the_uri_limit_is_answered() {
    // The tests that measure RSS measure the whole process: none runs beside them.
    let _serial = SERIAL.lock().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = abuse_server().await;
    let query: String = (0..9_000).map(|i| format!("k{i}=&")).collect();
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let request = format!(
        "GET /socket/websocket?vsn=2.0.0&{query} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        s.addr
    );
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap();
    let elapsed = started.elapsed();
    println!(
        "{} byte query: answered {:?} after {elapsed:?}",
        query.len(),
        String::from_utf8_lossy(&head[..n]).lines().next()
    );
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    assert!(elapsed < Duration::from_millis(500), "a {} byte query took {elapsed:?}", query.len());
}
