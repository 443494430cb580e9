//! The runtime over a real WebSocket, frame by frame, against
//! `shared/PROTOCOL.md` and the frames a real Phoenix server sends.

mod support;

use std::time::Duration;

use phx_channels_runtime::channel::Terminate;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{serve, server, Received};

#[tokio::test]
async fn heartbeat_is_acked_on_phoenix_with_null_join_ref() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!([null, "1", "phoenix", "heartbeat", {}])).await;
    assert_eq!(c.json().await, json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}]));
}

#[tokio::test]
async fn join_reply_echoes_refs_and_the_response() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!(["7", "8", "echo:1", "phx_join", {"hello": "world"}])).await;
    assert_eq!(
        c.json().await,
        json!(["7", "8", "echo:1", "phx_reply", {"status": "ok", "response": {"hello": "world"}}])
    );
}

#[tokio::test]
async fn pushes_made_while_joining_follow_the_join_reply() {
    let s = server().await;
    let mut c = s.v2().await;
    assert_eq!(c.join("1", "echo:push").await[4]["status"], "ok");
    assert_eq!(c.json().await, json!(["1", null, "echo:push", "welcome", {"early": true}]));
}

#[tokio::test]
async fn a_broadcast_reaches_every_subscriber_before_the_senders_reply() {
    let s = server().await;
    let (mut a, mut b, mut other) = (s.v2().await, s.v2().await, s.v2().await);
    a.join("1", "echo:room").await;
    b.join("1", "echo:room").await;
    other.join("1", "echo:elsewhere").await;
    a.send(json!(["1", "2", "echo:room", "shout", {"x": 1}])).await;
    let expected = json!([null, null, "echo:room", "shout", {"x": 1}]);
    assert_eq!(a.json().await, expected);
    assert_eq!(a.json().await, json!(["1", "2", "echo:room", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(b.json().await, expected);
    other.silent(200).await;
}

#[tokio::test]
async fn broadcast_from_skips_the_sender() {
    let s = server().await;
    let (mut a, mut b) = (s.v2().await, s.v2().await);
    a.join("1", "echo:from").await;
    b.join("1", "echo:from").await;
    a.send(json!(["1", "2", "echo:from", "shout_from", {}])).await;
    assert_eq!(a.json().await[3], "phx_reply");
    assert_eq!(b.json().await, json!([null, null, "echo:from", "shout", {"from": "other"}]));
    a.silent(200).await;
}

#[tokio::test]
async fn endpoint_broadcasts_reach_subscribers_from_outside_any_channel() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:news").await;
    s.endpoint.broadcast("echo:news", "flash", json!({"n": 1})).unwrap();
    assert_eq!(c.json().await, json!([null, null, "echo:news", "flash", {"n": 1}]));
}

#[tokio::test]
async fn unmatched_topics_are_answered_with_a_null_join_ref() {
    let s = server().await;
    let mut c = s.v2().await;
    let unmatched = json!({"status": "error", "response": {"reason": "unmatched topic"}});
    c.send(json!(["13", "13", "nope:1", "phx_join", {}])).await;
    assert_eq!(c.json().await, json!([null, "13", "nope:1", "phx_reply", unmatched]));
    c.send(json!(["2", "14", "echo:not-joined", "ping", {}])).await;
    assert_eq!(c.json().await, json!([null, "14", "echo:not-joined", "phx_reply", unmatched]));
}

#[tokio::test]
async fn a_crash_kills_only_that_channel_and_it_can_rejoin() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:a").await;
    c.join("2", "echo:b").await;
    c.send(json!(["1", "3", "echo:a", "crash", {}])).await;
    assert_eq!(c.json().await, json!(["1", "1", "echo:a", "phx_error", {"reason": "channel_crash"}]));
    // the other channel is alive
    c.send(json!(["2", "4", "echo:b", "ping", {"alive": true}])).await;
    assert_eq!(c.json().await, json!(["2", "4", "echo:b", "phx_reply", {"status": "ok", "response": {"alive": true}}]));
    // the dead one is gone
    c.send(json!(["1", "5", "echo:a", "ping", {}])).await;
    assert_eq!(c.json().await[0], json!(null));
    // and joins afresh (no phx_close for the dead instance)
    assert_eq!(c.join("6", "echo:a").await[4]["status"], "ok");
    c.send(json!(["6", "7", "echo:a", "ping", {}])).await;
    assert_eq!(c.json().await, json!(["6", "7", "echo:a", "phx_reply", {"status": "ok", "response": {}}]));
}

#[tokio::test]
async fn a_handler_error_crashes_the_channel() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:err").await;
    c.send(json!(["1", "2", "echo:err", "fail", {}])).await;
    assert_eq!(c.json().await, json!(["1", "1", "echo:err", "phx_error", {"reason": "channel_crash"}]));
}

#[tokio::test]
async fn a_join_that_panics_is_answered_join_crashed() {
    let s = server().await;
    let mut c = s.v2().await;
    assert_eq!(
        c.join("1", "echo:panic").await,
        json!(["1", "1", "echo:panic", "phx_reply", {"status": "error", "response": {"reason": "join crashed"}}])
    );
    // the socket lives on
    assert_eq!(c.join("2", "echo:fine").await[4]["status"], "ok");
}

// The paused clock moves on only once every task is idle: whatever the
// refused join leaves to clean up has run by then.
#[tokio::test(start_paused = true)]
async fn a_refused_join_keeps_its_join_ref_and_leaves_nothing_behind() {
    let s = server().await;
    let mut c = s.v2().await;
    assert_eq!(
        c.join("12", "echo:refuse").await,
        json!(["12", "12", "echo:refuse", "phx_reply", {"status": "error", "response": {"reason": "refused"}}])
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(json!(["12", "13", "echo:refuse", "ping", {}])).await;
    assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
}

#[tokio::test]
async fn leave_replies_ok_then_closes_and_stops_broadcasts() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("19", "echo:leave").await;
    c.send(json!(["19", "20", "echo:leave", "phx_leave", {}])).await;
    assert_eq!(c.json().await, json!(["19", "20", "echo:leave", "phx_reply", {"status": "ok", "response": {}}]));
    assert_eq!(c.json().await, json!(["19", "19", "echo:leave", "phx_close", {}]));
    s.endpoint.broadcast("echo:leave", "late", json!({})).unwrap();
    c.silent(200).await;
    // leaving a topic that is not joined: ok, echoing the join_ref sent
    c.send(json!(["77", "21", "echo:never", "phx_leave", {}])).await;
    assert_eq!(c.json().await, json!(["77", "21", "echo:never", "phx_reply", {"status": "ok", "response": {}}]));
}

#[tokio::test]
async fn a_duplicate_join_closes_the_old_instance_and_broadcasts_arrive_once() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("15", "echo:dup").await;
    c.send(json!(["22", "22", "echo:dup", "phx_join", {}])).await;
    let mut frames = [c.json().await, c.json().await];
    frames.sort_by_key(|f| f[3].as_str().map(str::to_owned));
    assert_eq!(frames[0], json!(["15", "15", "echo:dup", "phx_close", {}]));
    assert_eq!(frames[1], json!(["22", "22", "echo:dup", "phx_reply", {"status": "ok", "response": {}}]));
    s.endpoint.broadcast("echo:dup", "once", json!({})).unwrap();
    assert_eq!(c.json().await, json!([null, null, "echo:dup", "once", {}]));
    c.silent(200).await;
}

#[tokio::test]
async fn stale_join_refs_are_dropped_and_null_ones_accepted() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:stale").await;
    c.send(json!(["99", "2", "echo:stale", "ping", {}])).await;
    c.silent(200).await;
    c.send(json!([null, "3", "echo:stale", "ping", {"n": 3}])).await;
    assert_eq!(c.json().await, json!(["1", "3", "echo:stale", "phx_reply", {"status": "ok", "response": {"n": 3}}]));
    // a stale leave is dropped too: the channel still answers
    c.send(json!(["99", "4", "echo:stale", "phx_leave", {}])).await;
    c.silent(200).await;
    c.send(json!(["1", "5", "echo:stale", "ping", {}])).await;
    assert_eq!(c.json().await[1], "5");
}

#[tokio::test]
async fn a_join_without_join_ref_uses_its_ref_for_later_frames() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!([null, "5", "echo:nulljr", "phx_join", {}])).await;
    assert_eq!(c.json().await, json!([null, "5", "echo:nulljr", "phx_reply", {"status": "ok", "response": {}}]));
    c.send(json!([null, "6", "echo:nulljr", "push", {}])).await;
    assert_eq!(c.json().await, json!(["5", null, "echo:nulljr", "pushed", {"n": 1}]));
}

#[tokio::test]
async fn the_channel_cap_refuses_joins_over_the_limit() {
    let s = serve(SocketOptions { max_channels: 3, ..SocketOptions::default() }).await;
    let mut c = s.v2().await;
    for i in 0..3 {
        assert_eq!(c.join(&i.to_string(), &format!("echo:{i}")).await[4]["status"], "ok");
    }
    assert_eq!(
        c.join("9", "echo:9").await,
        json!(["9", "9", "echo:9", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
    );
    // rejoining a topic already joined is not a new channel
    c.send(json!(["10", "10", "echo:0", "phx_join", {}])).await;
    let mut events = [c.json().await, c.json().await].map(|f| f[3].as_str().unwrap().to_owned());
    events.sort();
    assert_eq!(events, ["phx_close", "phx_reply"]);
    // after a leave there is room again
    c.send(json!(["1", "11", "echo:1", "phx_leave", {}])).await;
    assert_eq!(c.json().await[3], "phx_reply");
    assert_eq!(c.json().await[3], "phx_close");
    assert_eq!(c.join("12", "echo:12").await[4]["status"], "ok");
}

#[tokio::test]
async fn stop_replies_then_closes_the_channel() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:stop").await;
    c.send(json!(["1", "2", "echo:stop", "stop", {}])).await;
    assert_eq!(
        c.json().await,
        json!(["1", "2", "echo:stop", "phx_reply", {"status": "ok", "response": {"bye": true}}])
    );
    assert_eq!(c.json().await, json!(["1", "1", "echo:stop", "phx_close", {}]));
}

#[tokio::test]
async fn heartbeats_are_answered_while_a_join_is_slow() {
    let s = server().await;
    let mut c = s.v2().await;
    // The join is held until the test opens its gate.
    c.send(json!(["1", "1", "echo:gated-heartbeat", "phx_join", {}])).await;
    c.send(json!([null, "2", "phoenix", "heartbeat", {}])).await;
    assert_eq!(c.json().await[1], "2", "the heartbeat ack comes first");
    support::open_gate("echo:gated-heartbeat");
    assert_eq!(c.json().await[1], "1");
}

// The slow join sleeps on the paused clock.
#[tokio::test(start_paused = true)]
async fn messages_sent_during_a_join_are_handled_after_it_in_order() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!(["1", "1", "echo:slow", "phx_join", {}])).await;
    c.send(json!(["1", "2", "echo:slow", "ping", {"n": 2}])).await;
    c.send(json!(["1", "3", "echo:slow", "phx_leave", {}])).await;
    let refs: Vec<_> = [c.json().await, c.json().await, c.json().await, c.json().await]
        .iter()
        .map(|f| (f[1].as_str().unwrap().to_owned(), f[3].as_str().unwrap().to_owned()))
        .collect();
    let expected = [("1", "phx_reply"), ("2", "phx_reply"), ("3", "phx_reply"), ("1", "phx_close")];
    assert_eq!(refs, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
}

#[tokio::test]
async fn a_slow_handler_does_not_block_other_channels() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:busy").await;
    c.join("2", "echo:free").await;
    // The handler is held until the test opens its gate.
    c.send(json!(["1", "3", "echo:busy", "gated", {}])).await;
    c.send(json!(["2", "4", "echo:free", "ping", {}])).await;
    assert_eq!(c.json().await[1], "4");
    support::open_gate("echo:busy");
    assert_eq!(c.json().await[1], "3");
}

#[tokio::test]
async fn disconnect_on_the_socket_id_closes_every_connection_of_that_user_with_1001() {
    let s = server().await;
    let mut u1 = s.connect("vsn=2.0.0&user_id=u9").await;
    let mut u2 = s.connect("vsn=2.0.0&user_id=u9").await;
    let mut other = s.connect("vsn=2.0.0&user_id=u10").await;
    for c in [&mut u1, &mut u2, &mut other] {
        c.join("1", "echo:1").await;
    }
    s.endpoint.broadcast("users_socket:u9", "disconnect", json!({})).unwrap();
    assert_eq!(u1.close_code().await, Some(1001));
    assert_eq!(u2.close_code().await, Some(1001));
    other.send(json!(["1", "2", "echo:1", "ping", {}])).await;
    assert_eq!(other.json().await[1], "2");
}

#[tokio::test]
async fn refused_connects_are_http_403() {
    let s = server().await;
    assert_eq!(s.refused_status("vsn=2.0.0&token=invalid").await, 403);
    assert_eq!(s.refused_status("vsn=3.0.0").await, 403);
    assert_eq!(s.refused_status("vsn=abc").await, 403);
}

#[tokio::test]
async fn plain_http_gets_400() {
    let s = server().await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /socket/websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
}

#[tokio::test]
async fn v1_frames_are_objects_without_join_ref() {
    let s = server().await;
    // no vsn at all means V1
    let mut c = s.connect("").await;
    c.send(json!({"topic": "echo:v1", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"})).await;
    assert_eq!(
        c.json().await,
        json!({"topic": "echo:v1", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "1"})
    );
    c.send(json!({"topic": "echo:v1", "event": "shout", "payload": {"a": 1}, "ref": "2"})).await;
    assert_eq!(c.json().await, json!({"topic": "echo:v1", "event": "shout", "payload": {"a": 1}, "ref": null}));
    assert_eq!(c.json().await["ref"], "2");
    c.send(json!({"topic": "echo:v1", "event": "crash", "payload": {}, "ref": "3", "join_ref": "1"})).await;
    assert_eq!(
        c.json().await,
        json!({"topic": "echo:v1", "event": "phx_error", "payload": {"reason": "channel_crash"}, "ref": "1"})
    );
}

#[tokio::test]
async fn binary_frames_round_trip_on_v2() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("3", "echo:bin").await;
    // kind 0 push: join_ref "3", ref "9", topic, event "ping", payload 01 02 03
    let mut frame = vec![0u8, 1, 1, 8, 4];
    frame.extend_from_slice(b"39echo:binping");
    frame.extend_from_slice(&[1, 2, 3]);
    c.send_binary(frame).await;
    let mut reply = vec![1u8, 1, 1, 8, 2];
    reply.extend_from_slice(b"39echo:binok");
    reply.extend_from_slice(&[1, 2, 3]);
    assert_eq!(c.recv().await, Received::Binary(reply));
}

#[tokio::test]
async fn a_relayed_binary_payload_reaches_v2_subscribers_unchanged_and_skips_v1_ones() {
    // The payload is larger than the default broadcast limit (64 KiB).
    let s = serve(SocketOptions { max_broadcast_bytes: 1 << 20, ..SocketOptions::default() }).await;
    let topic = "echo:relay";
    let mut sender = s.v2().await;
    let mut v2 = s.v2().await;
    let mut v1 = s.connect("vsn=1.0.0").await;
    sender.join("1", topic).await;
    v2.join("2", topic).await;
    v1.send(json!({"topic": topic, "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"})).await;
    assert_eq!(v1.json().await["payload"]["status"], "ok");

    // not UTF-8, and bigger than one read buffer
    let bytes: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + 7) as u8).chain([0xff, 0xfe, 0x00]).collect();
    let mut push = vec![0u8, 1, 1, topic.len() as u8, 5];
    push.extend_from_slice(format!("19{topic}relay").as_bytes());
    push.extend_from_slice(&bytes);
    sender.send_binary(push).await;

    // kind 2 broadcast: topic | event | the payload, byte for byte
    let mut broadcast = vec![2u8, topic.len() as u8, 7];
    broadcast.extend_from_slice(format!("{topic}relayed").as_bytes());
    broadcast.extend_from_slice(&bytes);
    match v2.recv().await {
        // compared without printing 70 KB on failure
        Received::Binary(got) => assert!(got == broadcast, "a different frame of {} bytes", got.len()),
        other => panic!("expected the binary broadcast, got {other:?}"),
    }
    assert_eq!(sender.json().await, json!(["1", "9", topic, "phx_reply", {"status": "ok", "response": {}}]));

    // A JSON broadcast after it: the V1 client's next frame is that one, so
    // the binary one was skipped (and the sender got nothing of its own).
    sender.send(json!(["1", "10", topic, "shout", {"after": "binary"}])).await;
    let shout = json!({"topic": topic, "event": "shout", "payload": {"after": "binary"}, "ref": null});
    assert_eq!(v1.json().await, shout);
    assert_eq!(sender.json().await, json!([null, null, topic, "shout", {"after": "binary"}]));
    assert_eq!(v2.json().await, json!([null, null, topic, "shout", {"after": "binary"}]));

    // and the V1 connection is healthy
    v1.send(json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "h"})).await;
    assert_eq!(
        v1.json().await,
        json!({"topic": "phoenix", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "h"})
    );
}

#[tokio::test]
async fn malformed_frames_close_with_1007_and_others_are_unaffected() {
    let s = server().await;
    let mut bystander = s.v2().await;
    bystander.join("1", "echo:by").await;
    for bad in ["this is not json", "[1,2]", "{\"topic\":1}", "[\"1\",\"2\",\"t\",\"e\"]"] {
        let mut c = s.v2().await;
        c.send_text(bad).await;
        assert_eq!(c.close_code().await, Some(1007), "{bad}");
    }
    let mut v1 = s.connect("vsn=1.0.0").await;
    v1.send_binary(vec![0, 0, 0, 1, 1, b't', b'e']).await;
    assert_eq!(v1.close_code().await, Some(1003));
    bystander.send(json!(["1", "2", "echo:by", "ping", {}])).await;
    assert_eq!(bystander.json().await[1], "2");
}

#[tokio::test]
async fn oversized_frames_close_with_1009() {
    let s = serve(SocketOptions { max_frame_size: 1024, ..SocketOptions::default() }).await;
    let mut c = s.v2().await;
    c.send(json!(["1", "1", "echo:big", "phx_join", {"blob": "x".repeat(2000)}])).await;
    assert_eq!(c.close_code().await, Some(1009));
}

// The idle timeout runs on the runtime's clock: the paused clock steps over it.
#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_with_a_code_that_lets_clients_reconnect() {
    let s = serve(SocketOptions { idle_timeout: Duration::from_millis(300), ..SocketOptions::default() }).await;
    let mut chatty = s.v2().await;
    let mut idle = s.v2().await;
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        chatty.send(json!([null, i.to_string(), "phoenix", "heartbeat", {}])).await;
        assert_eq!(chatty.json().await[1], i.to_string());
    }
    assert_eq!(idle.close_code().await, Some(1001));
    chatty.send(json!([null, "last", "phoenix", "heartbeat", {}])).await;
    assert_eq!(chatty.json().await[1], "last");
}

#[tokio::test]
async fn a_consumer_that_stops_reading_is_disconnected_and_others_keep_receiving() {
    let s = serve(SocketOptions { max_outbound_bytes: 256 * 1024, ..SocketOptions::default() }).await;
    let mut stalled = s.v2().await;
    let mut reader = s.v2().await;
    stalled.join("1", "echo:flood").await;
    reader.join("1", "echo:flood").await;
    let blob = "x".repeat(64 * 1024);
    // Enough to fill the kernel's socket buffers and then the outbox.
    let reading = tokio::spawn(async move {
        let mut n = 0;
        while n < 400 {
            match reader.recv().await {
                Received::Json(_) => n += 1,
                other => panic!("reader lost its connection: {other:?}"),
            }
        }
        n
    });
    for _ in 0..400 {
        s.endpoint.broadcast("echo:flood", "blob", json!({"b": blob})).unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert_eq!(reading.await.unwrap(), 400);
    // The stalled client finds its connection ended once it reads again:
    // with a close frame (1008) if the server could still write it, else cut.
    let mut delivered = 0;
    let code = loop {
        match stalled.recv().await {
            Received::Closed(code) => break code,
            _ => delivered += 1,
        }
    };
    assert!(matches!(code, Some(1008) | None), "closed with {code:?}");
    assert!(delivered < 400, "a stalled consumer cannot have received everything");
}

// ---------------------------------------------------------------- Channel API

#[tokio::test]
async fn intercepted_events_pass_through_handle_out_per_subscriber() {
    let s = server().await;
    let (mut a, mut b) = (s.v2().await, s.v2().await);
    a.join("3", "echo:intercept").await;
    b.join("5", "echo:intercept").await;
    s.endpoint.broadcast("echo:intercept", "secret", json!({"text": "hi"})).unwrap();
    // rewritten per subscriber, as a push: join_ref set, ref null
    assert_eq!(a.json().await, json!(["3", null, "echo:intercept", "secret", {"text": "hi", "mine": "3"}]));
    assert_eq!(b.json().await, json!(["5", null, "echo:intercept", "secret", {"text": "hi", "mine": "5"}]));
    // filtered events are dropped, others stay on the fastlane
    s.endpoint.broadcast("echo:intercept", "filtered", json!({})).unwrap();
    s.endpoint.broadcast("echo:intercept", "plain", json!({})).unwrap();
    assert_eq!(a.json().await, json!([null, null, "echo:intercept", "plain", {}]));
    assert_eq!(b.json().await, json!([null, null, "echo:intercept", "plain", {}]));
}

#[tokio::test]
async fn asynchronous_replies_through_a_socket_ref() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:async").await;
    c.send(json!(["1", "2", "echo:async", "later", {}])).await;
    c.send(json!(["1", "3", "echo:async", "ping", {}])).await;
    // the ping is answered while `later` waits: the handler returned without replying
    assert_eq!(c.json().await[1], "3");
    c.send(json!(["1", "4", "echo:async", "release", {}])).await;
    let mut frames = [c.json().await, c.json().await].map(|f| f.to_string());
    frames.sort();
    assert_eq!(
        frames[0],
        json!(["1", "2", "echo:async", "phx_reply", {"status": "ok", "response": {"later": true}}]).to_string()
    );
    assert_eq!(frames[1], json!(["1", "4", "echo:async", "phx_reply", {"status": "ok", "response": {}}]).to_string());
}

// `send_after` runs on the paused clock.
#[tokio::test(start_paused = true)]
async fn handle_info_gets_messages_from_timers_and_other_tasks() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:info").await;
    c.send(json!(["1", "2", "echo:info", "tick", {}])).await;
    assert_eq!(c.json().await[3], "phx_reply");
    assert_eq!(c.json().await, json!(["1", null, "echo:info", "tick", {"n": 1}]));
    c.send(json!(["1", "3", "echo:info", "tell", {}])).await;
    let mut frames = [c.json().await, c.json().await].map(|f| f.to_string());
    frames.sort();
    assert_eq!(frames[1], json!(["1", null, "echo:info", "tick", {"n": 7}]).to_string());
}

#[tokio::test]
async fn terminate_is_told_why_the_channel_ended() {
    let s = server().await;
    let mut c = s.v2().await;
    for (jr, topic) in [("1", "echo:t-leave"), ("2", "echo:t-stop"), ("3", "echo:t-crash"), ("4", "echo:t-dup")] {
        c.join(jr, topic).await;
    }
    c.send(json!(["1", "10", "echo:t-leave", "phx_leave", {}])).await;
    c.send(json!(["2", "11", "echo:t-stop", "stop", {}])).await;
    c.send(json!(["3", "12", "echo:t-crash", "tell_wrong", {}])).await;
    c.send(json!(["5", "5", "echo:t-dup", "phx_join", {}])).await;
    for _ in 0..8 {
        c.json().await;
    }
    c.join("6", "echo:t-close").await;
    drop(c);
    support::eventually("the connection's channels terminate", || {
        !support::terminated("echo:t-close").is_empty() && support::terminated("echo:t-dup").len() == 2
    })
    .await;
    assert_eq!(support::terminated("echo:t-leave"), [Terminate::Left]);
    assert_eq!(support::terminated("echo:t-stop"), [Terminate::Stopped]);
    assert_eq!(support::terminated("echo:t-crash"), [Terminate::Crashed("unexpected &str".into())]);
    // the displaced instance; the new one ended when the connection closed
    assert_eq!(support::terminated("echo:t-dup"), [Terminate::Displaced, Terminate::Closed]);
    assert_eq!(support::terminated("echo:t-close"), [Terminate::Closed]);
}

// ---------------------------------------------------------------- origin, metrics

#[tokio::test]
async fn foreign_origins_are_refused_by_default() {
    let s = server().await;
    assert_eq!(s.connect_from("https://evil.example").await.err(), Some(403));
    assert!(s.connect_from("http://localhost:5173").await.is_ok());
    assert!(s.connect_from(&format!("http://{}", s.addr)).await.is_ok(), "the server's own host");
}

#[tokio::test]
async fn allowed_origins_are_configurable() {
    let check_origin = phx_channels_runtime::origin::CheckOrigin::allow(["https://app.example"]).unwrap();
    let s = serve(SocketOptions { check_origin, ..SocketOptions::default() }).await;
    assert!(s.connect_from("https://app.example").await.is_ok());
    assert_eq!(s.connect_from("http://localhost:5173").await.err(), Some(403));
}

#[tokio::test]
async fn metrics_count_what_happened() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:m").await;
    c.join("2", "nope").await;
    c.send(json!(["1", "3", "echo:m", "crash", {}])).await;
    c.json().await;
    assert_eq!(s.refused_status("vsn=2.0.0&token=invalid").await, 403);
    let m = s.endpoint.metrics();
    assert_eq!((m.connections_accepted, m.connections_refused, m.connections_open), (1, 1, 1));
    assert_eq!((m.joins, m.joins_refused, m.channel_crashes, m.channels_open), (1, 1, 1, 0));
    assert_eq!(m.messages_in, 3);
    assert_eq!(m.frames_out, 3);
    drop(c);
    support::eventually("the connection closes", || s.endpoint.metrics().connections_open == 0).await;
}
