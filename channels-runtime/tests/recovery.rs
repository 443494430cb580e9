//! History and recovery on one node (the memory engine), over the wire:
//! positions in `ref`, the `phx_recovery` frame, what a rejoin is sent and
//! in what order, what `join` sees, `handle_out` on what is recovered, V1,
//! binary and LongPoll, hostile positions, and a hand-over raced by a
//! stream of broadcasts. The contract is `docs/recovery.md`.

mod support;

use std::time::Duration;

use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::pubsub::{History, PubSub};
use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::{serve_with, server, Client, Received, Server, KEPT};

/// A join asking for positions (`at`: null, or the last position seen).
async fn join_at(client: &mut Client, jr: &str, topic: &str, at: Value) -> (Value, Value) {
    client.send(json!([jr, jr, topic, "phx_join", {"phx_position": at}])).await;
    let mut reply = client.json().await;
    while reply[3] == "phx_close" {
        // the earlier join of the topic on this connection, displaced
        reply = client.json().await;
    }
    assert_eq!(reply[3], "phx_reply", "{reply}");
    if reply[4]["status"] != "ok" {
        return (reply, Value::Null);
    }
    let recovery = client.json().await;
    assert_eq!(recovery[3], "phx_recovery", "{recovery}");
    assert_eq!(recovery[0], jr, "a push of the channel: {recovery}");
    assert_eq!(recovery[1], recovery[4]["position"], "its ref is the position: {recovery}");
    (reply, recovery)
}

/// `"epoch:offset"` → (epoch, offset).
fn split(position: &Value) -> (String, u64) {
    let text = position.as_str().unwrap_or_else(|| panic!("not a position: {position}"));
    let (epoch, offset) = text.rsplit_once(':').unwrap();
    (epoch.to_owned(), offset.parse().unwrap())
}

/// Broadcasts `n` shouts on `topic` from the server side.
fn shout(server: &Server, topic: &str, from: u64, n: u64) {
    for i in from..from + n {
        server.endpoint.pubsub().broadcast(topic, "shout", json!({"n": i})).unwrap();
    }
}

/// The next `n` frames of `topic`'s broadcasts: (position, payload n).
async fn shouts(client: &mut Client, n: usize) -> Vec<(u64, u64)> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = client.json().await;
        if frame[3] == "shout" {
            got.push((split(&frame[1]).1, frame[4]["n"].as_u64().unwrap()));
        }
    }
    got
}

#[tokio::test]
async fn positions_reach_clients_that_ask_and_others_get_the_frames_they_always_got() {
    let s = server().await;
    let mut plain = s.v2().await;
    let joined = plain.join("1", "kept:wire").await;
    assert_eq!(joined, json!(["1", "1", "kept:wire", "phx_reply", {"status": "ok", "response": {"saw": null}}]));

    let mut asking = s.v2().await;
    let (reply, recovery) = join_at(&mut asking, "3", "kept:wire", Value::Null).await;
    assert_eq!(
        reply[4]["response"]["saw"],
        json!({"recovered": false, "missed": 0, "reason": "none", "events": []}),
        "join sees the recovery"
    );
    let (epoch, zero) = split(&recovery[1]);
    assert_eq!(zero, 0);
    assert_eq!(
        recovery,
        json!(["3", format!("{epoch}:0"), "kept:wire", "phx_recovery",
               {"recovered": false, "position": format!("{epoch}:0"), "missed": 0, "reason": "none"}])
    );

    plain.send(json!(["1", "2", "kept:wire", "shout", {"n": 1}])).await;
    // byte for byte what a topic without history sends
    assert_eq!(plain.json().await, json!([null, null, "kept:wire", "shout", {"n": 1}]));
    assert_eq!(plain.json().await, json!(["1", "2", "kept:wire", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(asking.json().await, json!([null, format!("{epoch}:1"), "kept:wire", "shout", {"n": 1}]));

    // V1: the position in "ref"
    let mut v1 = s.connect("vsn=1.0.0").await;
    v1.send(json!({"topic": "kept:wire", "event": "phx_join", "payload": {"phx_position": format!("{epoch}:1")}, "ref": "9"}))
        .await;
    assert_eq!(v1.json().await["event"], "phx_reply");
    let recovery = v1.json().await;
    assert_eq!(recovery["event"], "phx_recovery");
    assert_eq!(recovery["ref"], format!("{epoch}:1"));
    assert_eq!(recovery["payload"]["recovered"], true);
    shout(&s, "kept:wire", 2, 1);
    assert_eq!(
        v1.json().await,
        json!({"topic": "kept:wire", "event": "shout", "payload": {"n": 2}, "ref": format!("{epoch}:2")})
    );
    assert_eq!(plain.json().await, json!([null, null, "kept:wire", "shout", {"n": 2}]));
}

#[tokio::test]
async fn a_rejoin_gets_what_it_missed_in_order_then_live_exactly_once() {
    let s = server().await;
    let mut first = s.v2().await;
    let (_, recovery) = join_at(&mut first, "1", "kept:back", Value::Null).await;
    shout(&s, "kept:back", 1, 2);
    assert_eq!(shouts(&mut first, 2).await, [(1, 1), (2, 2)]);
    let (epoch, _) = split(&recovery[1]);
    drop(first);

    shout(&s, "kept:back", 3, 3);
    let mut again = s.v2().await;
    let (reply, recovery) = join_at(&mut again, "5", "kept:back", json!(format!("{epoch}:2"))).await;
    assert_eq!(
        reply[4]["response"]["saw"],
        json!({"recovered": true, "missed": 3, "reason": null, "events": ["shout", "shout", "shout"]})
    );
    assert_eq!(recovery[4], json!({"recovered": true, "position": format!("{epoch}:2"), "missed": 3}));
    assert_eq!(shouts(&mut again, 3).await, [(3, 3), (4, 4), (5, 5)]);
    shout(&s, "kept:back", 6, 1);
    assert_eq!(shouts(&mut again, 1).await, [(6, 6)]);
    again.silent(100).await;

    // nothing missed: recovered, nothing replayed
    let mut third = s.v2().await;
    let (_, recovery) = join_at(&mut third, "1", "kept:back", json!(format!("{epoch}:6"))).await;
    assert_eq!(recovery[4], json!({"recovered": true, "position": format!("{epoch}:6"), "missed": 0}));
    third.silent(100).await;
}

#[tokio::test]
async fn beyond_the_history_a_rejoin_is_told_it_was_not_recovered_and_goes_on_live() {
    let s = server().await;
    let mut watcher = s.v2().await;
    let (_, recovery) = join_at(&mut watcher, "1", "kept:gap", Value::Null).await;
    let (epoch, _) = split(&recovery[1]);
    let kept = KEPT as u64;

    // exactly the bound: recovered
    shout(&s, "kept:gap", 1, kept);
    let mut bound = s.v2().await;
    let (_, recovery) = join_at(&mut bound, "1", "kept:gap", json!(format!("{epoch}:0"))).await;
    assert_eq!(recovery[4]["recovered"], true);
    assert_eq!(shouts(&mut bound, KEPT).await.len(), KEPT);

    // one more: gone, never shown as complete
    shout(&s, "kept:gap", kept + 1, 1);
    let mut late = s.v2().await;
    let (reply, recovery) = join_at(&mut late, "1", "kept:gap", json!(format!("{epoch}:0"))).await;
    assert_eq!(reply[4]["response"]["saw"]["reason"], "expired");
    let top = format!("{epoch}:{}", kept + 1);
    assert_eq!(recovery[4], json!({"recovered": false, "position": top, "missed": 0, "reason": "expired"}));
    late.silent(100).await;
    shout(&s, "kept:gap", kept + 2, 1);
    assert_eq!(shouts(&mut late, 1).await, [(kept + 2, kept + 2)]);
}

#[tokio::test]
async fn hostile_positions_get_a_clear_answer_and_never_more_than_the_history() {
    let s = server().await;
    let mut other = s.v2().await;
    let (_, recovery) = join_at(&mut other, "1", "kept:elsewhere", Value::Null).await;
    let other_epoch = split(&recovery[1]).0;
    let mut watcher = s.v2().await;
    let (_, recovery) = join_at(&mut watcher, "1", "kept:hostile", Value::Null).await;
    let epoch = split(&recovery[1]).0;
    shout(&s, "kept:hostile", 1, 20);

    let cases = [
        (json!("garbage"), "invalid"),
        (json!(""), "invalid"),
        (json!(-1), "invalid"),
        (json!(7), "invalid"),
        (json!(1.5), "invalid"),
        (json!(true), "invalid"),
        (json!({"epoch": epoch, "offset": 1}), "invalid"),
        (json!([epoch, 1]), "invalid"),
        (json!(format!("{epoch}:-1")), "invalid"),
        (json!(format!("{epoch}:99999999999999999999999")), "invalid"),
        (json!("x".repeat(1 << 20)), "invalid"),
        (json!(format!("{epoch}:21")), "future"),
        (json!(format!("{epoch}:{}", u64::MAX)), "future"),
        (json!(format!("{other_epoch}:0")), "epoch"),
        (json!(format!("{other_epoch}:3")), "epoch"),
        (json!("never:1"), "epoch"),
    ];
    let mut client = s.v2().await;
    for (i, (hostile, reason)) in cases.into_iter().enumerate() {
        let jr = (i + 1).to_string();
        let (reply, recovery) = join_at(&mut client, &jr, "kept:hostile", hostile.clone()).await;
        assert_eq!(reply[4]["status"], "ok", "{hostile}: {reply}");
        assert_eq!(
            recovery[4],
            json!({"recovered": false, "position": format!("{epoch}:20"), "missed": 0, "reason": reason}),
            "{}",
            hostile.to_string().chars().take(80).collect::<String>()
        );
    }
    // the last join of the topic is the client's channel, and it still works
    client.silent(100).await;
    shout(&s, "kept:hostile", 21, 1);
    assert_eq!(shouts(&mut client, 1).await, [(21, 21)]);

    // too old, on a connection that was sent nothing of the topic
    let mut fresh = s.v2().await;
    let (_, recovery) = join_at(&mut fresh, "1", "kept:hostile", json!(format!("{epoch}:0"))).await;
    assert_eq!(
        recovery[4],
        json!({"recovered": false, "position": format!("{epoch}:21"), "missed": 0, "reason": "expired"})
    );
}

/// phoenix.js may join again on the connection it is joined on (a join
/// timing out, a rejoin timer racing a reconnect): the broadcasts the
/// earlier join was sent reach it before the new join's reply, positions
/// and all, so the new join starts after them, whatever position it asked
/// from.
#[tokio::test]
async fn a_rejoin_on_the_same_connection_starts_after_what_the_connection_was_sent() {
    let s = server().await;
    for (topic, events) in [("kept:again", ["shout", "shout"]), ("keptout:again", ["open", "secret"])] {
        let mut client = s.v2().await;
        let (_, recovery) = join_at(&mut client, "1", topic, Value::Null).await;
        let epoch = split(&recovery[1]).0;
        for (n, event) in events.iter().enumerate() {
            s.endpoint.pubsub().broadcast(topic, event, json!({"n": n + 1})).unwrap();
        }
        // the broadcasts reach the client while it joins again from 0
        for _ in 0..2 {
            let frame = client.json().await;
            assert!(frame[1].as_str().is_some_and(|p| p.starts_with(&epoch)), "{frame}");
        }
        let (_, recovery) = join_at(&mut client, "2", topic, json!(format!("{epoch}:0"))).await;
        assert_eq!(recovery[4], json!({"recovered": true, "position": format!("{epoch}:2"), "missed": 0}), "{topic}");
        client.silent(100).await;
    }
}

#[tokio::test]
async fn a_flood_of_rejoins_is_refused_past_the_join_rate_and_each_replays_at_most_the_history() {
    let s = serve_with(Endpoint::new(), SocketOptions { max_joins_per_second: 20, ..SocketOptions::default() }).await;
    let mut watcher = s.v2().await;
    let (_, recovery) = join_at(&mut watcher, "1", "kept:flood", Value::Null).await;
    let epoch = split(&recovery[1]).0;
    shout(&s, "kept:flood", 1, 10);
    let mut flood = s.v2().await;
    let joins = 500;
    for i in 0..joins {
        let jr = i.to_string();
        flood.send(json!([jr, jr, "kept:flood", "phx_join", {"phx_position": format!("{epoch}:6")}])).await;
    }
    let (mut ok, mut refused, mut replayed) = (0, 0, 0);
    let mut seen = 0;
    while seen < joins {
        let frame = flood.json().await;
        match frame[3].as_str() {
            Some("phx_reply") => {
                seen += 1;
                match frame[4]["response"]["reason"].as_str() {
                    Some("too many joins") => refused += 1,
                    _ => ok += 1,
                }
            }
            Some("shout") => replayed += 1,
            _ => {}
        }
    }
    assert!((1..=20).contains(&ok) && refused == joins - ok, "{ok} ok, {refused} refused");
    // every accepted rejoin replays 7..=10 at most once each
    flood.silent(200).await;
    assert!(replayed <= ok * 4, "{replayed} replayed for {ok} joins");
    assert_eq!(watcher.json().await[1], format!("{epoch}:1"), "others are unaffected");
}

#[tokio::test]
async fn join_sees_what_is_recovered_and_may_refuse_or_decline() {
    let s = server().await;
    let mut watcher = s.v2().await;
    let (_, recovery) = join_at(&mut watcher, "1", "kept:refuse", Value::Null).await;
    let epoch = split(&recovery[1]).0;
    let mut watcher2 = s.v2().await;
    let (_, recovery) = join_at(&mut watcher2, "1", "kept:decline", Value::Null).await;
    let decline_epoch = split(&recovery[1]).0;
    shout(&s, "kept:refuse", 1, 3);
    shout(&s, "kept:decline", 1, 3);

    let mut client = s.v2().await;
    let (reply, _) = join_at(&mut client, "1", "kept:refuse", json!(format!("{epoch}:0"))).await;
    assert_eq!(
        reply[4],
        json!({"status": "error", "response": {"reason": "reload", "saw": {"recovered": true, "missed": 3, "reason": null, "events": ["shout", "shout", "shout"]}}})
    );
    client.silent(100).await;
    let (reply, recovery) = join_at(&mut client, "2", "kept:refuse", json!(format!("{epoch}:1"))).await;
    assert_eq!(reply[4]["status"], "ok");
    assert_eq!(recovery[4]["missed"], 2);
    assert_eq!(shouts(&mut client, 2).await, [(2, 2), (3, 3)]);

    let (_, recovery) = join_at(&mut client, "3", "kept:decline", json!(format!("{decline_epoch}:0"))).await;
    assert_eq!(
        recovery[4],
        json!({"recovered": false, "position": format!("{decline_epoch}:3"), "missed": 0, "reason": "declined"})
    );
    client.silent(100).await;
}

#[tokio::test]
async fn handle_out_runs_on_what_is_recovered_and_keeps_its_place() {
    let s = server().await;
    let mut first = s.v2().await;
    let (_, recovery) = join_at(&mut first, "1", "keptout:a", Value::Null).await;
    let epoch = split(&recovery[1]).0;
    drop(first);
    let pubsub = s.endpoint.pubsub().clone();
    pubsub.broadcast("keptout:a", "secret", json!({"n": 1})).unwrap();
    pubsub.broadcast("keptout:a", "filtered", json!({"n": 2})).unwrap();
    pubsub.broadcast("keptout:a", "open", json!({"n": 3})).unwrap();
    pubsub.broadcast("keptout:a", "secret", json!({"n": 4})).unwrap();

    let mut again = s.v2().await;
    let (_, recovery) = join_at(&mut again, "7", "keptout:a", json!(format!("{epoch}:0"))).await;
    assert_eq!(recovery[4]["missed"], 4);
    // live ones, intercepted and not, keep their order behind the recovered
    pubsub.broadcast("keptout:a", "open", json!({"n": 5})).unwrap();
    pubsub.broadcast("keptout:a", "secret", json!({"n": 6})).unwrap();
    let expected = [
        json!(["7", format!("{epoch}:1"), "keptout:a", "secret", {"n": 1, "seen": true}]),
        json!([null, format!("{epoch}:3"), "keptout:a", "open", {"n": 3}]),
        json!(["7", format!("{epoch}:4"), "keptout:a", "secret", {"n": 4, "seen": true}]),
        json!([null, format!("{epoch}:5"), "keptout:a", "open", {"n": 5}]),
        json!(["7", format!("{epoch}:6"), "keptout:a", "secret", {"n": 6, "seen": true}]),
    ];
    for frame in expected {
        assert_eq!(again.json().await, frame);
    }
    again.silent(100).await;
}

#[tokio::test]
async fn binary_broadcasts_are_followed_by_their_position() {
    let s = server().await;
    let mut client = s.v2().await;
    let (_, recovery) = join_at(&mut client, "1", "kept:bin", Value::Null).await;
    let epoch = split(&recovery[1]).0;
    let mut plain = s.v2().await;
    plain.join("1", "kept:bin").await;
    s.endpoint.pubsub().broadcast("kept:bin", "blob", vec![1u8, 2, 3]).unwrap();
    let kind2 = {
        let mut frame = vec![2u8, 8, 4];
        frame.extend_from_slice(b"kept:binblob");
        frame.extend_from_slice(&[1, 2, 3]);
        frame
    };
    assert_eq!(client.recv().await, Received::Binary(kind2.clone()));
    assert_eq!(client.json().await, json!([null, format!("{epoch}:1"), "kept:bin", "phx_position", {}]));
    assert_eq!(plain.recv().await, Received::Binary(kind2.clone()));
    plain.silent(100).await;
    drop(client);
    let mut again = s.v2().await;
    join_at(&mut again, "2", "kept:bin", json!(format!("{epoch}:0"))).await;
    assert_eq!(again.recv().await, Received::Binary(kind2));
    assert_eq!(again.json().await, json!([null, format!("{epoch}:1"), "kept:bin", "phx_position", {}]));
}

#[tokio::test]
async fn longpoll_clients_get_positions_in_their_messages() {
    let s = serve_with(Endpoint::new(), SocketOptions { longpoll: true, ..SocketOptions::default() }).await;
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    let token = opened["token"].as_str().unwrap().to_owned();
    let query = format!("vsn=2.0.0&token={token}");
    let join = r#"["1","1","kept:lp","phx_join",{"phx_position":null}]"#;
    assert_eq!(s.longpoll("POST", &query, "application/json", join).await["status"], 200);
    let mut frames: Vec<Value> = Vec::new();
    while frames.len() < 2 {
        let polled = s.longpoll("GET", &query, "application/json", "").await;
        for m in polled["messages"].as_array().cloned().unwrap_or_default() {
            frames.push(serde_json::from_str(m.as_str().unwrap()).unwrap());
        }
    }
    assert_eq!(frames[1][3], "phx_recovery");
    let epoch = split(&frames[1][1]).0;
    shout(&s, "kept:lp", 1, 1);
    let polled = s.longpoll("GET", &query, "application/json", "").await;
    assert_eq!(
        polled["messages"],
        json!([json!([null, format!("{epoch}:1"), "kept:lp", "shout", {"n": 1}]).to_string()])
    );
}

#[tokio::test]
async fn another_node_in_memory_has_another_epoch_and_says_so() {
    let a = server().await;
    let b = server().await;
    let mut on_a = a.v2().await;
    let (_, recovery) = join_at(&mut on_a, "1", "kept:moved", Value::Null).await;
    shout(&a, "kept:moved", 1, 2);
    let mut on_b = b.v2().await;
    let (_, moved) = join_at(&mut on_b, "1", "kept:moved", json!(format!("{}:2", split(&recovery[1]).0))).await;
    assert_eq!(moved[4]["recovered"], false);
    assert_eq!(moved[4]["reason"], "epoch");
}

/// Rejoins raced by a stream of broadcasts: every client, dropped and
/// rejoined at its last position many times, ends with every broadcast
/// exactly once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoins_raced_by_broadcasts_lose_and_double_nothing() {
    let pubsub = PubSub::local();
    pubsub.keep_history("kept:race", History::new(10_000, Duration::from_secs(60)));
    let s = serve_with(Endpoint::new().with_pubsub(pubsub.clone()), SocketOptions::default()).await;
    const N: u64 = 3_000;
    const CLIENTS: usize = 10;
    let mut tasks = Vec::new();
    let url_server = std::sync::Arc::new(s);
    for c in 0..CLIENTS {
        let s = url_server.clone();
        tasks.push(tokio::spawn(async move {
            let mut got: Vec<u64> = Vec::new();
            let mut at = Value::Null;
            let mut rejoins = 0u64;
            while got.last().copied() != Some(N) {
                let mut client = s.v2().await;
                let (_, recovery) = join_at(&mut client, "1", "kept:race", at.clone()).await;
                assert!(at.is_null() || recovery[4]["recovered"] == true, "client {c}: {recovery}");
                at = recovery[1].clone();
                // read a while, then drop the connection mid-stream
                let budget = 50 + (c as u64 * 37 + rejoins * 91) % 400;
                for _ in 0..budget {
                    let Some(Received::Json(frame)) = client.recv_within(Duration::from_secs(2)).await else { break };
                    if frame[3] != "shout" {
                        continue;
                    }
                    let (_, offset) = split(&frame[1]);
                    got.push(frame[4]["n"].as_u64().unwrap());
                    assert_eq!(offset, frame[4]["n"].as_u64().unwrap());
                    at = frame[1].clone();
                    if offset == N {
                        break;
                    }
                }
                rejoins += 1;
            }
            (got, rejoins)
        }));
    }
    for i in 1..=N {
        url_server.endpoint.pubsub().broadcast("kept:race", "shout", json!({"n": i})).unwrap();
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for task in tasks {
        let (got, rejoins) = tokio::time::timeout(Duration::from_secs(30), task).await.unwrap().unwrap();
        let first = got.first().copied().unwrap_or(1);
        let expected: Vec<u64> = (first..=N).collect();
        assert_eq!(got, expected, "after {rejoins} rejoins");
        assert!(rejoins > 3, "the test dropped connections ({rejoins} rejoins)");
    }
}
