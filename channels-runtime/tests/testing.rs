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
    assert_eq!((status.as_str(), response), ("ok", json!({})));
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
