//! The in-process test helpers, on the same hand-written channel the
//! WebSocket tests use.

mod support;

use std::time::Duration;

use phx_channels_runtime::reply::Status;
use phx_channels_runtime::testing::TestSocket;
use serde_json::json;
use support::TestSocket as Sock;

#[tokio::test]
async fn join_push_reply_and_broadcast() {
    let mut socket = TestSocket::<Sock>::connect(&[("user_id", "7")]).await.unwrap();
    let (reply, channel) = socket.join("echo:t1", json!({"hello": 1})).await.unwrap();
    assert_eq!(reply, json!({"hello": 1}));

    let r = channel.push("ping", json!({"n": 1}));
    channel.assert_reply(&r, Status::Ok, json!({"n": 1})).await;

    let r = channel.push("shout", json!({"text": "hi"}));
    channel.assert_reply(&r, Status::Ok, json!({})).await;
    channel.assert_broadcast("shout", json!({"text": "hi"})).await;

    channel.push("push", json!({}));
    channel.assert_push("pushed", json!({"n": 1})).await;
    channel.refute_push("pushed", Duration::from_millis(50)).await;
}

#[tokio::test]
async fn broadcast_from_is_seen_by_the_test_but_not_pushed_to_the_client() {
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:t2", json!({})).await.unwrap();
    let r = channel.push("shout_from", json!({}));
    channel.assert_reply(&r, Status::Ok, json!({})).await;
    channel.assert_broadcast("shout", json!({"from": "other"})).await;
    // Phoenix leaves the sender's own client out of `broadcast_from`.
    channel.refute_push("shout", Duration::from_millis(50)).await;
}

#[tokio::test]
async fn assert_push_sees_the_broadcasts_the_client_gets() {
    // Phoenix's `assert_push` matches every message sent to the client:
    // the channel's broadcast reaches its own client, and the test's
    // subscription sees it on the topic.
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:pushes", json!({})).await.unwrap();
    let r = channel.push("shout", json!({"text": "hi"}));
    channel.assert_reply(&r, Status::Ok, json!({})).await;
    channel.assert_push("shout", json!({"text": "hi"})).await;
    channel.assert_broadcast("shout", json!({"text": "hi"})).await;

    // Another member's broadcast reaches this client too, and `next_push`
    // and `refute_push` see broadcasts as `assert_push` does.
    let mut other = TestSocket::<Sock>::builder().pubsub(socket.pubsub()).connect(&[]).await.unwrap();
    let (_, theirs) = other.join("echo:pushes", json!({})).await.unwrap();
    theirs.push("shout", json!({"text": "from the other"}));
    assert_eq!(channel.next_push("shout").await, json!({"text": "from the other"}));
    channel.refute_push("shout", Duration::from_millis(50)).await;
}

#[tokio::test]
async fn the_tests_broadcast_from_reaches_the_client_and_not_the_test() {
    // Phoenix's `broadcast_from(socket, ..)` in a channel test: the channel
    // forwards it to its client, the test process is left out.
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:from-test", json!({})).await.unwrap();
    channel.broadcast_from("news", json!({"n": 1}));
    channel.assert_push("news", json!({"n": 1})).await;
    channel.refute_broadcast("news", Duration::from_millis(50)).await;
    // `broadcast` reaches both.
    channel.broadcast("news", json!({"n": 2}));
    channel.assert_push("news", json!({"n": 2})).await;
    channel.assert_broadcast("news", json!({"n": 2})).await;
}

#[tokio::test]
async fn intercepted_broadcasts_are_seen_as_handle_out_pushed_them() {
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:intercepted", json!({})).await.unwrap();
    // `secret` is intercepted and pushed changed: only the changed one
    // reaches the client; the topic saw the original.
    channel.broadcast("secret", json!({"s": 1}));
    channel.assert_push("secret", json!({"s": 1, "mine": "1"})).await;
    channel.refute_push("secret", Duration::from_millis(50)).await;
    channel.assert_broadcast("secret", json!({"s": 1})).await;
    // `filtered` is intercepted and dropped: never pushed, still broadcast.
    channel.broadcast_from("filtered", json!({"f": 1}));
    channel.broadcast("filtered", json!({"f": 2}));
    channel.refute_push("filtered", Duration::from_millis(50)).await;
    channel.assert_broadcast("filtered", json!({"f": 2})).await;
}

#[tokio::test]
async fn replies_and_leaves_read_as_a_status() {
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:status", json!({})).await.unwrap();
    let (status, response) = channel.reply(&channel.push("ping", json!({"n": 1}))).await;
    // The status `reply` returns is the one `assert_reply` takes, and reads
    // as its wire form too.
    assert_eq!(status, Status::Ok);
    assert_eq!(status, "ok");
    assert_eq!(response, json!({"n": 1}));
    let (status, _) = channel.reply(&channel.push("no such event", json!({}))).await;
    assert_eq!((status, status.to_string()), (Status::Error, "error".to_owned()));
    let (status, _) = channel.leave().await;
    assert_eq!(status, Status::Ok);
}

#[tokio::test]
async fn refusals_crashes_and_leaves() {
    let mut socket = TestSocket::<Sock>::with_assigns(None);
    assert_eq!(socket.join("echo:refuse", json!({})).await.unwrap_err(), json!({"reason": "refused"}));
    assert_eq!(socket.join("nope", json!({})).await.unwrap_err(), json!({"reason": "unmatched topic"}));

    let (_, channel) = socket.join("echo:t3", json!({})).await.unwrap();
    channel.push("crash", json!({}));
    channel.assert_crashed().await;

    let (_, channel) = socket.join("echo:t4", json!({})).await.unwrap();
    let (status, response) = channel.leave().await;
    assert_eq!((status, response), (Status::Ok, json!({})));
}

#[tokio::test]
async fn refused_connects() {
    let refused = TestSocket::<Sock>::connect(&[("token", "invalid")]).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn broadcasts_from_the_test_reach_the_channel_and_intercepts_apply() {
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, channel) = socket.join("echo:t5", json!({})).await.unwrap();
    channel.broadcast("secret", json!({"s": 1}));
    channel.assert_push("secret", json!({"s": 1, "mine": "1"})).await;
}

#[tokio::test]
#[should_panic(expected = "expected push nothing_like_this")]
async fn a_failed_assertion_says_what_arrived() {
    let mut socket = TestSocket::<Sock>::connect(&[]).await.unwrap();
    socket.set_timeout(Duration::from_millis(50));
    let (_, channel) = socket.join("echo:push", json!({})).await.unwrap();
    channel.assert_push("nothing_like_this", json!({})).await;
}
