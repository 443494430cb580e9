//! The `discuss` channels, tested in-process with `phx_channels::testing`
//! (like Phoenix.ChannelTest): no server, no network, the real channels,
//! on a SQLite file of their own.

#[path = "../examples/discuss/app.rs"]
mod app;
mod support;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use app::store::{Limits, Store};
use app::{App, UserSocket};
use phx_channels::testing::{TestSocket, TestSocketBuilder};
use phx_channels::{PubSub, Status};
use serde_json::{json, Value};
use support::TempSqlite;

/// An app and the SQLite file it keeps its comments in.
struct TestApp {
    app: Arc<App>,
    _db: TempSqlite,
}

impl Deref for TestApp {
    type Target = Arc<App>;
    fn deref(&self) -> &Arc<App> {
        &self.app
    }
}

/// A fresh app: every test has its own comments.
async fn app_with(admin_token: Option<&str>) -> TestApp {
    let db = TempSqlite::new();
    let store = Store::connect(&db.url(), Limits::default()).await.unwrap();
    TestApp { app: Arc::new(App::new(store, PubSub::local(), admin_token.map(str::to_owned))), _db: db }
}

async fn app() -> TestApp {
    app_with(None).await
}

/// A socket on `app`, sharing its PubSub.
fn on(app: &Arc<App>) -> TestSocketBuilder<UserSocket> {
    TestSocket::<UserSocket>::with_state(app.clone()).pubsub(&app.pubsub)
}

fn topic() -> String {
    "comments:42".to_owned()
}

#[tokio::test]
async fn joining_a_comments_topic_says_hey_and_lists_its_comments() {
    let app = app().await;
    let mut socket = on(&app).connect(&[("user_id", "7")]).await.unwrap();
    let topic = topic();
    let (reply, _channel) = socket.join(&topic, json!({})).await.unwrap();
    assert_eq!(reply, json!({"hey": "there", "comments": []}));
}

#[tokio::test]
async fn a_topic_that_is_not_all_digits_is_refused() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    for bad in ["comments:abc", "comments:12x", "comments:-5", "comments:"] {
        assert_eq!(socket.join(bad, json!({})).await.unwrap_err(), json!({"reason": "invalid topic"}), "{bad}");
    }
    assert_eq!(socket.join("elsewhere:1", json!({})).await.unwrap_err(), json!({"reason": "unmatched topic"}));
}

#[tokio::test]
async fn adding_a_comment_broadcasts_only_its_content_and_keeps_it() {
    let app = app().await;
    let mut socket = on(&app).connect(&[("user_id", "7")]).await.unwrap();
    let topic = topic();
    let (_, channel) = socket.join(&topic, json!({})).await.unwrap();

    let push = channel.push("comment:add", json!({"content": "first!"}));
    channel.assert_reply(&push, Status::Ok, json!({})).await;
    // the model derives Encode with `only = [content]`: no user_id, no inserted_at
    channel.assert_broadcast(&format!("{topic}:new"), json!({"comment": {"content": "first!"}})).await;

    let mut later = on(&app).connect(&[]).await.unwrap();
    let (reply, _) = later.join(&topic, json!({})).await.unwrap();
    assert_eq!(reply, json!({"hey": "there", "comments": [{"content": "first!"}]}));

    // Another app (another database) never sees this one's comments.
    let other = self::app().await;
    let mut elsewhere = on(&other).connect(&[]).await.unwrap();
    let (reply, _) = elsewhere.join(&topic, json!({})).await.unwrap();
    assert_eq!(reply, json!({"hey": "there", "comments": []}));
}

#[tokio::test]
async fn a_join_replays_only_the_latest_comments() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, channel) = socket.join("comments:7", json!({})).await.unwrap();
    for n in 0..app::REPLAYED + 5 {
        let push = channel.push("comment:add", json!({"content": format!("c{n}")}));
        channel.assert_reply(&push, Status::Ok, json!({})).await;
    }
    let mut later = on(&app).connect(&[]).await.unwrap();
    let (reply, _) = later.join("comments:7", json!({})).await.unwrap();
    let comments = reply["comments"].as_array().unwrap();
    assert_eq!(comments.len(), app::REPLAYED as usize);
    assert_eq!(comments[0], json!({"content": "c5"}), "the oldest go first");
    assert_eq!(comments[app::REPLAYED as usize - 1], json!({"content": format!("c{}", app::REPLAYED + 4)}));
}

#[tokio::test]
async fn blank_or_missing_content_is_refused_and_nothing_is_broadcast() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let topic = topic();
    let (_, channel) = socket.join(&topic, json!({})).await.unwrap();
    let blank = json!({"errors": {"content": ["can't be blank"]}});
    for payload in
        [json!({}), json!({"content": ""}), json!({"content": "  "}), json!({"content": 5}), json!({"content": null})]
    {
        let push = channel.push("comment:add", payload);
        channel.assert_reply(&push, Status::Error, &blank).await;
    }
    channel.refute_broadcast(&format!("{topic}:new"), Duration::from_millis(100)).await;
    // a payload that is not an object is not a comment at all: the error
    // names the payload itself
    let (status, response) = channel.reply(&channel.push("comment:add", json!(["hello"]))).await;
    assert_eq!((status.as_str(), response), ("error", json!({"errors": {"payload": ["can't be blank"]}})));
}

#[tokio::test]
async fn ping_echoes_any_payload_and_unknown_events_are_refused() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, channel) = socket.join(&topic(), json!({})).await.unwrap();
    let payload = json!({"nested": {"list": [1, "two", null]}, "emoji": "😀"});
    channel.assert_reply(&channel.push("ping", &payload), Status::Ok, &payload).await;
    channel.assert_reply(&channel.push("nope", json!({})), Status::Error, json!({"reason": "unknown event"})).await;
}

#[tokio::test]
async fn crash_kills_the_channel_alone() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, doomed) = socket.join(&topic(), json!({})).await.unwrap();
    let (_, survivor) = socket.join("comments:43", json!({})).await.unwrap();
    doomed.push("crash", json!({}));
    doomed.assert_crashed().await;
    survivor.assert_reply(&survivor.push("ping", json!({"alive": true})), Status::Ok, json!({"alive": true})).await;
}

#[tokio::test]
async fn rooms_need_a_name_track_presence_and_shout() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    assert_eq!(socket.join("room:t1", json!({})).await.unwrap_err(), json!({"reason": "name required"}));

    let (reply, room) = socket.join("room:t1", json!({"name": "ada"})).await.unwrap();
    assert_eq!(reply, json!({}));
    // right after the join: everyone gets a diff with ada joining, and this
    // client the whole presence state
    let diff = room.next_broadcast("presence_diff").await;
    assert_eq!(diff["leaves"], json!({}));
    let meta = &diff["joins"]["ada"]["metas"][0];
    assert!(meta["online_at"].as_str().is_some_and(|s| s.parse::<u64>().is_ok()), "{meta}");
    assert_eq!(meta["phx_ref"].as_str().map(str::len), Some(16));
    let state = room.next_push("presence_state").await;
    assert_eq!(state, json!({"ada": {"metas": [meta]}}));

    room.assert_reply(&room.push("shout", json!({"body": "hi"})), Status::Ok, json!({})).await;
    room.assert_broadcast("shout", json!({"from": "ada", "body": "hi"})).await;

    // leaving untracks: the others see ada leave
    let (status, _) = room.leave().await;
    assert_eq!(status, "ok");
}

#[tokio::test]
async fn a_second_member_sees_the_first_in_the_state_and_its_leave() {
    let app = app().await;
    let mut ada = on(&app).connect(&[]).await.unwrap();
    let mut bob = on(&app).connect(&[]).await.unwrap();
    let (_, ada_room) = ada.join("room:t2", json!({"name": "ada"})).await.unwrap();
    ada_room.next_push("presence_state").await;
    let (_, bob_room) = bob.join("room:t2", json!({"name": "bob"})).await.unwrap();
    let state = bob_room.next_push("presence_state").await;
    let mut names: Vec<_> = state.as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["ada", "bob"]);

    let ada_ref = state["ada"]["metas"][0]["phx_ref"].clone();
    ada.close();
    let leave = loop {
        let diff = bob_room.next_broadcast("presence_diff").await;
        if diff["leaves"].get("ada").is_some() {
            break diff;
        }
    };
    // Diffs are batched per broadcast period: the leave may share its diff
    // with the joins of the same period. Applied as phoenix.js does (joins,
    // then leaves), ada is gone: every ref of hers that joins also leaves.
    let refs = |side: &str| -> Vec<Value> {
        leave[side]
            .get("ada")
            .map_or(vec![], |p| p["metas"].as_array().unwrap().iter().map(|m| m["phx_ref"].clone()).collect())
    };
    assert_eq!(refs("leaves"), [ada_ref]);
    assert!(refs("joins").iter().all(|r| refs("leaves").contains(r)), "{leave}");
}

#[tokio::test]
async fn the_admin_route_needs_the_configured_token() {
    use app::Admin;
    let open = app_with(Some("s3cret")).await;
    assert_eq!(open.admin(Some("Bearer s3cret")), Admin::Allowed);
    assert_eq!(open.admin(Some("Bearer s3cre")), Admin::Refused);
    assert_eq!(open.admin(Some("s3cret")), Admin::Refused);
    // The scheme is case-insensitive (RFC 7235 §2.1).
    assert_eq!(open.admin(Some("bearer s3cret")), Admin::Allowed);
    assert_eq!(open.admin(Some("BEARER  s3cret")), Admin::Allowed);
    assert_eq!(open.admin(Some("Basic s3cret")), Admin::Refused);
    assert_eq!(open.admin(Some("Bearers3cret")), Admin::Refused);
    assert_eq!(open.admin(None), Admin::Refused);
    assert_eq!(app().await.admin(Some("Bearer anything")), Admin::Closed);
}

#[tokio::test]
async fn comments_and_names_have_a_length_limit() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, channel) = socket.join("comments:9", json!({})).await.unwrap();
    let long = channel.push("comment:add", json!({"content": "x".repeat(10_001)}));
    channel
        .assert_reply(&long, Status::Error, json!({"errors": {"content": ["should be at most 10000 character(s)"]}}))
        .await;
    channel.refute_broadcast("comments:9:new", Duration::from_millis(100)).await;
    let name = "n".repeat(app::MAX_NAME_BYTES + 1);
    assert_eq!(socket.join("room:t3", json!({"name": name})).await.unwrap_err(), json!({"reason": "name too long"}));
}

#[tokio::test]
async fn older_comments_are_paged_with_a_cursor() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, channel) = socket.join("comments:11", json!({})).await.unwrap();
    for n in 0..70 {
        channel
            .assert_reply(&channel.push("comment:add", json!({"content": format!("c{n}")})), Status::Ok, json!({}))
            .await;
    }
    let contents = |page: &serde_json::Value| -> Vec<String> {
        page["comments"].as_array().unwrap().iter().map(|c| c["content"].as_str().unwrap().to_owned()).collect()
    };
    let names = |range: std::ops::Range<usize>| -> Vec<String> { range.map(|n| format!("c{n}")).collect() };

    // Without a cursor: the newest, as a join replays them, and the cursor before them.
    let (status, first) = channel.reply(&channel.push("comments:before", json!({"before": null}))).await;
    assert_eq!(status, "ok", "{first}");
    assert_eq!(contents(&first), names(20..70));
    let mut later = on(&app).connect(&[]).await.unwrap();
    let (replay, _) = later.join("comments:11", json!({})).await.unwrap();
    assert_eq!(replay["comments"], first["comments"]);

    let (_, second) =
        channel.reply(&channel.push("comments:before", json!({"before": first["next"], "limit": 15}))).await;
    assert_eq!(contents(&second), names(5..20));
    let (_, last) =
        channel.reply(&channel.push("comments:before", json!({"before": second["next"], "limit": 15}))).await;
    assert_eq!(
        last,
        json!({"comments": names(0..5).iter().map(|c| json!({"content": c})).collect::<Vec<_>>(), "next": null})
    );
    for c in first["comments"].as_array().unwrap() {
        assert_eq!(c.as_object().unwrap().len(), 1, "only content leaves the server: {c}");
    }

    // A cursor is opaque, a limit bounded.
    for (payload, field) in [
        (json!({"before": "abc"}), "before"),
        (json!({"before": "-3"}), "before"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": app::MAX_PAGE + 1}), "limit"),
    ] {
        let (status, response) = channel.reply(&channel.push("comments:before", &payload)).await;
        assert_eq!(status, "error", "{payload}");
        assert!(response["errors"][field].is_array(), "{payload}: {response}");
    }
}

#[tokio::test]
async fn a_database_that_fails_is_an_error_reply_and_nothing_is_broadcast() {
    let app = app().await;
    let mut socket = on(&app).connect(&[]).await.unwrap();
    let (_, channel) = socket.join("comments:12", json!({})).await.unwrap();
    app.comments.close().await;

    let unavailable = json!({"reason": "storage unavailable"});
    channel.assert_reply(&channel.push("comment:add", json!({"content": "lost"})), Status::Error, &unavailable).await;
    channel.refute_broadcast("comments:12:new", Duration::from_millis(100)).await;
    channel.assert_reply(&channel.push("comments:before", json!({})), Status::Error, &unavailable).await;
    assert_eq!(socket.join("comments:13", json!({})).await.unwrap_err(), unavailable);
    // The channel is still there.
    channel.assert_reply(&channel.push("ping", json!({"alive": true})), Status::Ok, json!({"alive": true})).await;
}

#[tokio::test]
async fn comments_keep_history_and_a_rejoin_gets_what_it_missed() {
    let app = app().await;
    let topic = topic();
    let mut reader = on(&app).connect(&[("user_id", "1")]).await.unwrap();
    let (reply, first) = reader.join(&topic, json!({"phx_position": null})).await.unwrap();
    assert_eq!(reply, json!({"hey": "there", "comments": []}), "the join reply is unchanged");
    let report = first.next_push("phx_recovery").await;
    assert_eq!(report["recovered"], false);
    assert_eq!(report["reason"], "none");
    let position = report["position"].as_str().expect("a position").to_owned();
    first.leave().await;

    // while the reader is away, two comments
    let mut writer = on(&app).connect(&[("user_id", "2")]).await.unwrap();
    let (_, channel) = writer.join(&topic, json!({})).await.unwrap();
    for content in ["one", "two"] {
        let push = channel.push("comment:add", json!({"content": content}));
        channel.assert_reply(&push, Status::Ok, json!({})).await;
    }

    let (reply, back) = reader.join(&topic, json!({"phx_position": position})).await.unwrap();
    let report = back.next_push("phx_recovery").await;
    assert_eq!(report["recovered"], true, "{report}");
    assert_eq!(report["missed"], 2, "{report}");
    // the list is the client's; only what it missed comes, after the reply
    assert_eq!(reply["comments"], json!([]), "a recovered rejoin reads no comments: {reply}");
    for content in ["one", "two"] {
        assert_eq!(back.next_push("comments:42:new").await["comment"]["content"], content);
    }

    back.leave().await;

    // a rejoin from a position the topic never had is not recovered: the
    // reply carries the list
    let (reply, lost) = reader.join(&topic, json!({"phx_position": "0:1"})).await.unwrap();
    assert_eq!(lost.next_push("phx_recovery").await["recovered"], false);
    let listed: Vec<&str> =
        reply["comments"].as_array().unwrap().iter().map(|c| c["content"].as_str().unwrap()).collect();
    assert_eq!(listed, ["one", "two"], "{reply}");
}
