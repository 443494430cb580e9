//! A connection is one task, whatever it has joined: channels wait for mail
//! in their connection, not in tasks of their own, and still end properly
//! (terminate once) when a handler is in flight as the connection closes.

mod support;

use phx_channels_runtime::channel::Terminate;
use serde_json::json;
use support::{eventually, server, terminated};

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_channels_cost_no_task() {
    let s = server().await;
    // Warm up: the first connection starts what lives for the endpoint's life.
    let mut warm = s.v2().await;
    warm.join("1", "echo:warm").await;
    drop(warm);
    eventually("the warm-up connection is gone", || s.endpoint.metrics().connections_open == 0).await;
    let before = alive_tasks();

    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = s.v2().await;
        for n in 0..3 {
            let topic = format!("echo:{i}-{n}");
            assert_eq!(c.join(&n.to_string(), &topic).await[4]["status"], "ok");
        }
        clients.push(c);
    }
    // 20 connections, 60 channels, every one answering: 20 tasks.
    for c in &mut clients {
        c.send(json!(["2", "9", "echo:0-2", "ping", {}])).await;
    }
    assert_eq!(s.endpoint.metrics().channels_open, 60);
    eventually("one task per connection", || alive_tasks() == before + 20).await;
    drop(clients);
    eventually("every connection and channel gone", || {
        let m = s.endpoint.metrics();
        m.connections_open == 0 && m.channels_open == 0
    })
    .await;
    eventually("their tasks gone", || alive_tasks() == before).await;
}

#[tokio::test]
async fn a_handler_in_flight_at_close_finishes_then_terminates_once() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:t-inflight").await;
    // Held until the gate opens, after the connection is gone.
    c.send(json!(["1", "2", "echo:t-inflight", "gated", {}])).await;
    eventually("the handler runs", || s.endpoint.metrics().messages_in >= 2).await;
    drop(c);
    eventually("the connection is gone", || s.endpoint.metrics().connections_open == 0).await;
    assert!(terminated("echo:t-inflight").is_empty(), "terminate waits for the handler in flight");
    support::open_gate("echo:t-inflight");
    eventually("terminate ran", || !terminated("echo:t-inflight").is_empty()).await;
    assert_eq!(terminated("echo:t-inflight"), vec![Terminate::Closed]);
    eventually("the channel is closed", || s.endpoint.metrics().channels_open == 0).await;
}

// The timer sleeps on the paused clock.
#[tokio::test(start_paused = true)]
async fn a_timer_dies_with_its_channel_even_when_the_topic_is_joined_again() {
    let s = server().await;
    let mut c = s.v2().await;
    c.join("1", "echo:timer").await;
    let before = alive_tasks();
    // `tick` sets a 50 ms timer for the channel's handle_info.
    c.send(json!(["1", "2", "echo:timer", "tick", {}])).await;
    assert_eq!(c.json().await[1], "2");
    assert_eq!(alive_tasks(), before + 1, "a pending timer");
    c.send(json!(["1", "3", "echo:timer", "phx_leave", {}])).await;
    assert_eq!(c.json().await[1], "3");
    assert_eq!(c.json().await[3], "phx_close");
    // Gone with its channel, long before it would have fired (the paused
    // clock does not move while this task keeps yielding).
    for _ in 0..100 {
        if alive_tasks() == before {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(alive_tasks(), before, "the timer's task ended with its channel");
    // A new instance of the same topic gets nothing of the old one's.
    c.join("4", "echo:timer").await;
    c.silent(200).await;
    // While a timer of a live channel still fires.
    c.send(json!(["4", "5", "echo:timer", "tick", {}])).await;
    assert_eq!(c.json().await[1], "5");
    assert_eq!(c.json().await, json!(["4", null, "echo:timer", "tick", {"n": 1}]));
}
