//! Traces across the socket, over real sockets: a client's W3C
//! `traceparent` (connect parameter or header) reaches the handlers, and
//! every log line a channel writes carries the connection's span (with the
//! trace id) and the channel's (topic, join_ref, channel).
//!
//! One test: it installs the process's subscriber.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use abuse_helpers::Logs;
use serde_json::json;
use support::server;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_trace_and_log_inside_their_spans() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let s = server().await;

    // As a connect parameter (what a browser can send).
    let mut c = s.connect(&format!("vsn=2.0.0&traceparent={TRACEPARENT}")).await;
    assert_eq!(c.join("7", "echo:traced").await[4]["status"], "ok");
    c.send(json!(["7", "8", "echo:traced", "traceparent", {}])).await;
    let reply = c.json().await;
    assert_eq!(reply[4]["response"]["traceparent"], TRACEPARENT, "{reply}");

    let line = logs.wait_for(&["handler asked for its trace"]).await;
    let socket_span = r#"socket{transport="websocket" peer="#;
    assert!(line.contains(socket_span), "the connection's span: {line}");
    assert!(line.contains("trace_id=4bf92f3577b34da6a3ce929d0e0e4736"), "the trace id: {line}");
    assert!(line.contains(r#"channel{topic="echo:traced" join_ref="7" channel="Echo"}"#), "the channel's span: {line}");
    let joined = logs.wait_for(&["joined", "echo:traced"]).await;
    assert!(joined.contains(socket_span) && joined.contains("channel{"), "the join logs in both spans: {joined}");

    // As a header; a malformed one is ignored, never an error.
    for (header, expected) in [(TRACEPARENT, json!(TRACEPARENT)), ("00-not-a-trace-01", json!(null))] {
        let mut request = s.url("vsn=2.0.0").into_client_request().unwrap();
        request.headers_mut().insert("traceparent", header.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let mut c = support::Client::from(ws);
        assert_eq!(c.join("1", "echo:header").await[4]["status"], "ok");
        c.send(json!(["1", "2", "echo:header", "traceparent", {}])).await;
        assert_eq!(c.json().await[4]["response"]["traceparent"], expected, "header {header}");
    }

    let mut untraced = s.connect("vsn=2.0.0&traceparent=garbage").await;
    assert_eq!(untraced.join("1", "echo:untraced").await[4]["status"], "ok");
    untraced.send(json!(["1", "2", "echo:untraced", "traceparent", {}])).await;
    assert_eq!(untraced.json().await[4]["response"]["traceparent"], serde_json::Value::Null);
}
