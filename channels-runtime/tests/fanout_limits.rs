//! Fan-out limits over real sockets: what one client can make the server
//! send to everyone else (broadcast size and rate, presence meta size) is
//! bounded, the sender gets an error reply, and the readers stay connected
//! and never see what was refused.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::time::Duration;

use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::{serve, Client, Received};

/// Readers joined to `topic`, each with its join answered.
async fn readers(s: &support::Server, topic: &str, n: usize) -> Vec<Client> {
    let mut readers = Vec::new();
    for _ in 0..n {
        let mut r = s.v2().await;
        assert_eq!(r.join("1", topic).await[4]["status"], "ok");
        readers.push(r);
    }
    readers
}

/// The reply to message `msg_ref`, skipping the pushes before it (a sender
/// gets its own broadcasts).
async fn reply(c: &mut Client, msg_ref: &str) -> Value {
    loop {
        let frame = c.json().await;
        if frame[3] == "phx_reply" && frame[1] == msg_ref {
            return frame[4].clone();
        }
    }
}

/// The next frame a reader gets, which must be JSON (not a close).
async fn next_json(r: &mut Client) -> Value {
    match r.recv().await {
        Received::Json(frame) => frame,
        other => panic!("the reader got {other:?} instead of a frame"),
    }
}

#[tokio::test]
async fn a_broadcast_over_the_size_limit_is_answered_and_reaches_no_reader() {
    let s = serve(SocketOptions::default()).await;
    let topic = "echo:big";
    let mut readers = readers(&s, topic, 3).await;
    let mut sender = s.v2().await;
    assert_eq!(sender.join("1", topic).await[4]["status"], "ok");

    let big = "x".repeat(100_000);
    sender.send(json!(["1", "2", topic, "shout", {"text": big}])).await;
    let refused = reply(&mut sender, "2").await;
    assert_eq!(refused, json!({"status": "error", "response": {"reason": "broadcast too large", "max": 65536}}));

    // The channel still runs: a 1 KB shout goes out, and it is the first
    // thing every reader gets, so the large one never reached them.
    let small = "y".repeat(1_000);
    sender.send(json!(["1", "3", topic, "shout", {"text": small}])).await;
    assert_eq!(reply(&mut sender, "3").await["status"], "ok");
    for r in &mut readers {
        let frame = next_json(r).await;
        assert_eq!(
            (&frame[3], &frame[4]["text"]),
            (&json!("shout"), &json!(small)),
            "a reader got the large broadcast"
        );
    }
    assert_eq!(s.endpoint.connections(), 4, "a connection was closed");
    assert_eq!(s.endpoint.metrics().fanout_refused, 1);
    assert_eq!(s.endpoint.metrics().channel_crashes, 0, "the limit crashed the channel");
}

#[tokio::test]
async fn the_application_s_own_broadcasts_are_not_limited() {
    let s = serve(SocketOptions::default()).await;
    let mut r = readers(&s, "echo:app", 1).await.remove(0);
    let big = "x".repeat(100_000);
    s.endpoint.broadcast("echo:app", "news", json!({"text": big})).unwrap();
    assert_eq!(next_json(&mut r).await[4]["text"], json!(big));
}

#[tokio::test]
async fn a_join_that_broadcasts_too_much_is_refused_with_the_limit() {
    let s = serve(SocketOptions::default()).await;
    let mut c = s.v2().await;
    let big = "x".repeat(100_000);
    c.send(json!(["1", "1", "echo:broadcast", "phx_join", {"text": big}])).await;
    let refused = c.json().await;
    assert_eq!(refused[4], json!({"status": "error", "response": {"reason": "broadcast too large", "max": 65536}}));
    // Within the limit the same join succeeds.
    assert_eq!(c.join("2", "echo:broadcast").await[4]["status"], "ok");
    assert_eq!(s.endpoint.metrics().join_crashes, 0);
}

#[tokio::test(start_paused = true)]
async fn broadcasts_per_second_are_limited_per_connection() {
    let s = serve(SocketOptions::default()).await;
    let topic = "echo:rate";
    let mut r = readers(&s, topic, 1).await.remove(0);
    let mut sender = s.v2().await;
    assert_eq!(sender.join("1", topic).await[4]["status"], "ok");

    // 150 in a burst, with the clock standing still.
    for n in 0..150 {
        sender.send(json!(["1", format!("m{n}"), topic, "shout", {"n": n}])).await;
    }
    let mut refused = Vec::new();
    for n in 0..150 {
        let answer = reply(&mut sender, &format!("m{n}")).await;
        if answer["status"] != "ok" {
            assert_eq!(answer["response"], json!({"reason": "too many broadcasts", "max_per_second": 100}));
            refused.push(n);
        }
    }
    assert_eq!(refused, (100..150).collect::<Vec<_>>(), "not the first 100 out, the rest refused");
    for n in 0..100 {
        assert_eq!(next_json(&mut r).await[4]["n"], n);
    }

    // A second later the window has reopened.
    tokio::time::advance(Duration::from_secs(1)).await;
    sender.send(json!(["1", "again", topic, "shout", {"n": "again"}])).await;
    assert_eq!(reply(&mut sender, "again").await["status"], "ok");
    assert_eq!(next_json(&mut r).await[4]["n"], "again", "the reader got a refused broadcast");
    assert_eq!(s.endpoint.connections(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_admitted_broadcast_counts_toward_the_rate_and_goes_out_when_sent() {
    let s = serve(SocketOptions { max_broadcasts_per_second: 4, ..SocketOptions::default() }).await;
    let topic = "echo:admit";
    let mut r = readers(&s, topic, 1).await.remove(0);
    let mut sender = s.v2().await;
    assert_eq!(sender.join("1", topic).await[4]["status"], "ok");

    // Four admitted (two sent, two dropped unsent), the fifth refused.
    for n in 0..5 {
        let payload = json!({"n": n, "send": n % 2 == 0});
        sender.send(json!(["1", format!("m{n}"), topic, "admit", payload])).await;
    }
    for n in 0..4 {
        assert_eq!(reply(&mut sender, &format!("m{n}")).await["status"], "ok", "m{n}");
    }
    let refused = reply(&mut sender, "m4").await;
    assert_eq!(refused["response"], json!({"reason": "too many broadcasts", "max_per_second": 4}));
    for n in [0, 2] {
        assert_eq!(next_json(&mut r).await[4]["n"], n);
    }
    assert!(r.recv_within(Duration::from_millis(100)).await.is_none(), "an unsent or refused broadcast went out");
}

#[tokio::test]
async fn a_presence_meta_over_the_limit_is_answered_and_sends_no_diff() {
    let s = serve(SocketOptions::default()).await;
    let topic = "echo:presence";
    let mut r = readers(&s, topic, 1).await.remove(0);
    let mut sender = s.v2().await;
    assert_eq!(sender.join("1", topic).await[4]["status"], "ok");

    // The Echo channel tracks the key with `{"k": key}`: 10 KB of key
    // makes a meta of 20 KB.
    let big = "x".repeat(10_000);
    sender.send(json!(["1", "2", topic, "track", big])).await;
    let refused = reply(&mut sender, "2").await;
    assert_eq!(refused, json!({"status": "error", "response": {"reason": "presence meta too large", "max": 4096}}));

    // A small one is tracked, and its diff is the first the reader sees.
    sender.send(json!(["1", "3", topic, "track", "alice"])).await;
    assert_eq!(reply(&mut sender, "3").await["status"], "ok");
    let diff = next_json(&mut r).await;
    assert_eq!(diff[3], "presence_diff");
    let joins: Vec<&String> = diff[4]["joins"].as_object().unwrap().keys().collect();
    assert_eq!(joins, ["alice"], "the reader got the refused meta");
    assert_eq!(s.endpoint.metrics().channel_crashes, 0);
}

/// A reader over a raw socket with a small receive buffer, joined to
/// `topic`, that reads at most `rate` bytes per second (a phone on a
/// decent link): it counts what it read until `stop`, then returns it.
async fn paced_reader(
    addr: std::net::SocketAddr,
    topic: &str,
    rate: usize,
    stop: std::sync::Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<usize> {
    use tokio::io::AsyncReadExt;
    let mut s = raw_ws::joined_with_buffer(addr, 64 * 1024, topic).await;
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            tokio::select! {
                read = s.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                },
                () = stop.notified() => return total,
            }
            let due = Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(started + due).await;
        }
    })
}

/// What a sender's `relay` messages were answered: (ok, refused), the
/// refusals' responses checked to be `reason`.
async fn send_relays(
    sender: abuse_helpers::Raw,
    topic: &str,
    payload: &str,
    per_second: u32,
    seconds: u32,
    reason: &str,
) -> (usize, usize) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut tx, mut rx) = sender.ws.split();
    let total = (per_second * seconds) as usize;
    let answers = tokio::spawn({
        let reason = reason.to_owned();
        async move {
            let (mut ok, mut refused) = (0, 0);
            while ok + refused < total {
                let text = match rx.next().await {
                    Some(Ok(Message::Text(text))) => text,
                    other => panic!("the sender got {other:?}"),
                };
                let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                if frame[3] != "phx_reply" {
                    continue;
                }
                if frame[4]["status"] == "ok" {
                    ok += 1;
                } else {
                    assert_eq!(frame[4]["response"]["reason"], reason, "{frame}");
                    refused += 1;
                }
            }
            (ok, refused)
        }
    });
    let mut every = tokio::time::interval(Duration::from_secs(1) / per_second);
    for n in 0..total {
        every.tick().await;
        let frame = format!(r#"["1","{n}","{topic}","relay",{{"body":"{payload}"}}]"#);
        tx.send(Message::text(frame)).await.unwrap();
    }
    answers.await.unwrap()
}

#[tokio::test]
async fn honest_readers_survive_a_sender_at_the_allowed_maximum() {
    // The defaults: 100 broadcasts a second of up to 64 KiB were 6.5 MB/s
    // to every member; ten members reading 1 MB/s were closed as slow
    // consumers within seconds.
    let s = serve(SocketOptions::default()).await;
    let topic = "echo:flood";
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut readers = Vec::new();
    for _ in 0..10 {
        readers.push(paced_reader(s.addr, topic, 1_000_000, stop.clone()).await);
    }
    let mut sender = abuse_helpers::Raw::v2(s.addr).await;
    assert_eq!(sender.join("1", topic).await[4]["status"], "ok");
    support::eventually("every reader joined", || s.endpoint.pubsub().subscriber_count(topic) == 11).await;

    let payload = "x".repeat(64 * 1024 - 100);
    let (ok, refused) = send_relays(sender, topic, &payload, 100, 4, "too many broadcast bytes").await;
    stop.notify_waiters();
    let mut read = Vec::new();
    for reader in readers {
        read.push(reader.await.unwrap());
    }
    let m = s.endpoint.metrics();
    println!("a sender at 100 × 64 KiB/s for 4 s: {ok} broadcasts out, {refused} refused; readers read {read:?} bytes");
    assert_eq!(m.slow_consumers, 0, "an honest reader was closed as a slow consumer");
    assert_eq!(s.endpoint.connections(), 11);
    assert!(refused > 0, "the sender was never told");
    assert!(m.fanout_refused >= refused as u64);
}

#[tokio::test]
async fn what_all_senders_make_a_topic_fan_out_is_limited() {
    // No limit per connection: three senders together are held to the
    // topic's bytes per second.
    let per_topic = 128 * 1024;
    let s = serve(SocketOptions {
        max_broadcast_bytes_per_second: 0,
        max_topic_broadcast_bytes_per_second: per_topic,
        ..SocketOptions::default()
    })
    .await;
    let topic = "echo:busy";
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let reader = paced_reader(s.addr, topic, usize::MAX, stop.clone()).await;
    let mut senders = Vec::new();
    for _ in 0..3 {
        let mut sender = abuse_helpers::Raw::v2(s.addr).await;
        assert_eq!(sender.join("1", topic).await[4]["status"], "ok");
        senders.push(sender);
    }
    support::eventually("every member joined", || s.endpoint.pubsub().subscriber_count(topic) == 4).await;
    let payload = "y".repeat(16 * 1024);
    let started = std::time::Instant::now();
    let sent = senders.into_iter().map(|sender| {
        let payload = payload.clone();
        tokio::spawn(async move {
            send_relays(sender, topic, &payload, 50, 2, "too many broadcast bytes on this topic").await
        })
    });
    let mut ok = 0;
    for sent in sent {
        ok += sent.await.unwrap().0;
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.notify_waiters();
    let read = reader.await.unwrap();
    println!("3 senders at 50 × 16 KiB/s for {elapsed:?}: {ok} broadcasts out; the reader read {read} bytes");
    // Each second's window lets `per_topic` bytes through, whoever sends.
    let windows = elapsed.as_secs() as usize + 2;
    assert!(read <= windows * (per_topic + 16 * 1024 + 1024), "{read} bytes in {elapsed:?}");
    assert!(ok * 16 * 1024 <= windows * (per_topic + 16 * 1024), "{ok} broadcasts admitted");
}
