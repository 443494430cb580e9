//! With the `opentelemetry` feature and a `tracing-opentelemetry` layer, a
//! client's `traceparent` becomes the parent of its connection's span, and
//! the channel's span is a child of that: the server's spans join the
//! client's trace. Seen through OpenTelemetry's in-memory exporter.
//!
//! One test: it installs the process's subscriber.

mod support;

use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use support::server;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracing_subscriber::layer::SubscriberExt;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn finished(exporter: &InMemorySpanExporter, name: &str) -> Option<SpanData> {
    exporter.get_finished_spans().unwrap().into_iter().find(|span| span.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_trace_is_the_parent_of_the_connection_and_its_channels() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let s = server().await;
    let mut request = s.url("vsn=2.0.0").into_client_request().unwrap();
    request.headers_mut().insert("traceparent", TRACEPARENT.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut c = support::Client::from(ws);
    assert_eq!(c.join("1", "echo:otel").await[4]["status"], "ok");
    c.send(json!(["1", "2", "echo:otel", "ping", {}])).await;
    assert_eq!(c.json().await[4]["status"], "ok");
    drop(c);

    // Exported when they close: the channel as the connection ends, then
    // the connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (socket, channel) = loop {
        if let (Some(socket), Some(channel)) = (finished(&exporter, "socket"), finished(&exporter, "channel")) {
            break (socket, channel);
        }
        assert!(tokio::time::Instant::now() < deadline, "spans not exported: {:?}", exporter.get_finished_spans());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(socket.span_context.trace_id(), trace, "the connection joins the client's trace");
    assert_eq!(socket.parent_span_id, SpanId::from_hex("00f067aa0ba902b7").unwrap(), "under the client's span");
    assert!(socket.parent_span_is_remote);
    assert_eq!(channel.span_context.trace_id(), trace);
    assert_eq!(channel.parent_span_id, socket.span_context.span_id(), "the channel runs inside its connection");
    let topic = channel.attributes.iter().find(|kv| kv.key.as_str() == "topic").map(|kv| kv.value.to_string());
    assert_eq!(topic.as_deref(), Some("\"echo:otel\""));
}
