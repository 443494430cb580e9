//! `Presence::track_after_join`: one call from `join` that tracks, then
//! pushes `presence_state`, right after the join reply, with the frames
//! and order a real Phoenix sends (shared/conformance/PHOENIX_FRAMES.md,
//! "room join ok -> reply, presence_state, own presence_diff").

mod support;

use phx_channels_runtime::presence::Presence;
use phx_channels_runtime::reply::Status;
use phx_channels_runtime::testing::TestSocket;
use phx_channels_runtime::SocketOptions;
use serde_json::{json, Value};
use support::{eventually, open_gate, serve, server, TestSocket as Sock};

/// The `phx_ref` of `key`'s only meta in a presence map.
fn phx_ref(map: &Value, key: &str) -> String {
    let metas = map[key]["metas"].as_array().unwrap_or_else(|| panic!("no metas of {key} in {map}"));
    assert_eq!(metas.len(), 1, "{map}");
    metas[0]["phx_ref"].as_str().unwrap_or_else(|| panic!("no phx_ref in {map}")).to_owned()
}

#[tokio::test]
async fn the_joiner_gets_the_reply_its_own_diff_then_the_state_as_from_phoenix() {
    let s = server().await;
    let mut ada = s.v2().await;
    ada.send(json!(["1", "1", "echo:room", "phx_join", {"track": "ada"}])).await;
    assert_eq!(
        ada.json().await,
        json!(["1", "1", "echo:room", "phx_reply", {"status": "ok", "response": {"track": "ada"}}])
    );
    let diff = ada.json().await;
    let r = phx_ref(&diff[4]["joins"], "ada");
    assert_eq!(
        diff,
        json!([null, null, "echo:room", "presence_diff", {"joins": {"ada": {"metas": [{"k": "ada", "phx_ref": r}]}}, "leaves": {}}])
    );
    assert_eq!(
        ada.json().await,
        json!(["1", null, "echo:room", "presence_state", {"ada": {"metas": [{"k": "ada", "phx_ref": r}]}}])
    );
    // The period's batch tells everyone on the topic, ada too, of her join:
    // the same diff (clients merge a join they hold by its phx_ref).
    assert_eq!(ada.json().await, diff);

    // A second member: the same three frames, its state holding both; the
    // first member gets the diff alone.
    let mut bob = s.v2().await;
    bob.send(json!(["5", "5", "echo:room", "phx_join", {"track": "bob"}])).await;
    assert_eq!(bob.json().await[4]["status"], "ok");
    let diff = bob.json().await;
    assert_eq!((diff[3].as_str(), diff[4]["joins"].as_object().map(|j| j.len())), (Some("presence_diff"), Some(1)));
    let b = phx_ref(&diff[4]["joins"], "bob");
    let state = bob.json().await;
    assert_eq!(
        [&state[0], &state[1], &state[2], &state[3]],
        [&json!("5"), &Value::Null, &json!("echo:room"), &json!("presence_state")]
    );
    assert_eq!((phx_ref(&state[4], "ada"), phx_ref(&state[4], "bob")), (r, b.clone()));
    // bob's join, batched, to both.
    assert_eq!(ada.json().await, diff);
    assert_eq!(bob.json().await, diff);
    ada.silent(50).await;
}

#[tokio::test]
async fn pushes_made_in_join_go_first_and_v1_gets_the_same_order() {
    let s = server().await;
    let mut c = s.connect("vsn=1.0.0").await;
    c.send(json!({"topic": "echo:push", "event": "phx_join", "payload": {"track": "v1"}, "ref": "3", "join_ref": "3"}))
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let frame = c.json().await;
        got.push(json!([frame["event"], frame["ref"]]));
    }
    assert_eq!(
        got,
        [
            json!(["phx_reply", "3"]),
            json!(["welcome", null]),
            json!(["presence_diff", null]),
            json!(["presence_state", null])
        ]
    );
}

#[tokio::test]
async fn called_after_the_join_it_tracks_and_pushes_at_once() {
    let s = server().await;
    let mut c = s.v2().await;
    assert_eq!(c.join("1", "echo:later").await[4]["status"], "ok");
    c.send(json!(["1", "2", "echo:later", "track_after_join", "zed"])).await;
    assert_eq!(c.json().await[3], "presence_diff");
    let state = c.json().await;
    assert_eq!(state[3], "presence_state");
    phx_ref(&state[4], "zed");
    assert_eq!(c.json().await, json!(["1", "2", "echo:later", "phx_reply", {"status": "ok", "response": {}}]));
}

#[tokio::test]
async fn a_refused_join_tracks_nothing() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!(["1", "1", "echo:refuse", "phx_join", {"track": "ghost"}])).await;
    assert_eq!(c.json().await[4], json!({"status": "error", "response": {"reason": "refused"}}));
    c.silent(50).await;
    assert_eq!(Presence::list_topic(s.endpoint.pubsub(), "echo:refuse"), json!({}));
}

#[tokio::test]
async fn bad_metas_and_repeated_keys_refuse_the_join_with_the_error() {
    let s = serve(SocketOptions { max_presence_meta_bytes: 64, ..SocketOptions::default() }).await;
    let mut c = s.v2().await;
    let mut refusal = async |jr: &str, topic: &str, params: Value| {
        c.send(json!([jr, jr, topic, "phx_join", params])).await;
        let reply = c.json().await;
        assert_eq!(reply[4]["status"], "error", "{reply}");
        reply[4]["response"].clone()
    };
    assert_eq!(
        refusal("1", "echo:m1", json!({"track": "a", "meta": [1]})).await,
        json!({"reason": "a presence meta must serialize to a JSON object"})
    );
    assert_eq!(
        refusal("2", "echo:m2", json!({"track": "a", "meta": {"blob": "x".repeat(100)}})).await,
        json!({"reason": "presence meta too large", "max": 64})
    );
    assert_eq!(
        refusal("3", "echo:m3", json!({"track": ["a", "a"]})).await,
        json!({"reason": "`a` is already tracked on `echo:m3` by this channel; use update"})
    );
    for topic in ["echo:m1", "echo:m2", "echo:m3"] {
        assert_eq!(Presence::list_topic(s.endpoint.pubsub(), topic), json!({}), "{topic}");
    }
}

#[tokio::test]
async fn a_tracking_that_fails_after_the_reply_crashes_the_channel_alone() {
    // `join` tracked `a` itself, then asked for `a` after the join: the
    // second tracking fails once the client was told "ok".
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!(["1", "1", "echo:twice", "phx_join", {"track": "a", "track_now": "a"}])).await;
    assert_eq!(c.json().await[4]["status"], "ok");
    assert_eq!(c.json().await, json!(["1", "1", "echo:twice", "phx_error", {"reason": "channel_crash"}]));
    eventually("the crashed channel's presence to leave", || {
        Presence::list_topic(s.endpoint.pubsub(), "echo:twice") == json!({})
    })
    .await;
    // The connection carries on.
    assert_eq!(c.join("2", "echo:other").await[4]["status"], "ok");
}

#[tokio::test]
async fn a_connection_gone_while_joining_leaves_nothing_tracked() {
    let s = server().await;
    let mut c = s.v2().await;
    c.send(json!(["1", "1", "echo:gated-presence", "phx_join", {"track": "gone"}])).await;
    // Answered after the join was dispatched: the join waits at its gate.
    c.send(json!([null, "2", "phoenix", "heartbeat", {}])).await;
    assert_eq!(c.json().await[1], "2");
    drop(c);
    eventually("the connection closes", || s.endpoint.metrics().connections_open == 0).await;
    open_gate("echo:gated-presence");
    // The join finishes (tracking after its reply), then the channel ends
    // with its connection, and its presence with it.
    eventually("the join to finish and its channel to end", || {
        let m = s.endpoint.metrics();
        m.joins == 1 && m.channels_open == 0
    })
    .await;
    assert_eq!(Presence::list_topic(s.endpoint.pubsub(), "echo:gated-presence"), json!({}));
}

#[tokio::test]
async fn over_test_socket_the_joiner_and_the_others_see_the_presence() {
    let mut ada = TestSocket::<Sock>::connect(&[]).await.unwrap();
    let (_, ada_room) = ada.join("echo:t-presence", json!({"track": "ada"})).await.unwrap();
    let diff = ada_room.next_push("presence_diff").await;
    let r = phx_ref(&diff["joins"], "ada");
    assert_eq!(ada_room.next_push("presence_state").await, json!({"ada": {"metas": [{"k": "ada", "phx_ref": r}]}}));

    let mut bob = TestSocket::<Sock>::builder().pubsub(ada.pubsub()).connect(&[]).await.unwrap();
    let (_, bob_room) = bob.join("echo:t-presence", json!({"track": "bob"})).await.unwrap();
    let state = bob_room.next_push("presence_state").await;
    assert_eq!(state.as_object().map(|s| s.len()), Some(2), "{state}");
    assert!(ada_room.next_push("presence_diff").await["joins"].get("bob").is_some());

    let (status, _) = bob_room.leave().await;
    assert_eq!(status, Status::Ok);
    assert!(ada_room.next_push("presence_diff").await["leaves"].get("bob").is_some());
    let refused = ada.join("echo:refuse", json!({"track": "x"})).await;
    assert_eq!(refused.unwrap_err(), json!({"reason": "refused"}));
    assert_eq!(Presence::list_topic(ada.pubsub(), "echo:refuse"), json!({}));
}
