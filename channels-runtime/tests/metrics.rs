//! The runtime's figures as the application's `metrics` recorder sees them,
//! over real sockets: every figure is exported from the start, refusals by
//! their reason, LongPoll sessions, and the bytes queued for a client that
//! stops reading, which go back to 0 when it is closed as a slow consumer.
//!
//! One test: the recorder is global to the process, and the figures of
//! tests running at once would mix.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::collections::HashMap;

use abuse_helpers::{non_reader, Raw};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::origin::CheckOrigin;
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{eventually, serve, serve_with, upgrade_status};

/// Every series the recorder holds, from its Prometheus text:
/// `name{k=v,..}` → value (a histogram as its `_count`).
fn recorded(prometheus: &PrometheusHandle) -> HashMap<String, f64> {
    prometheus
        .render()
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.replace('"', ""), value.parse().ok()?))
        })
        .collect()
}

fn get(prometheus: &PrometheusHandle, series: &str) -> f64 {
    recorded(prometheus).get(series).copied().unwrap_or_else(|| panic!("{series} is not exported"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_sees_every_figure() {
    let prometheus = PrometheusBuilder::new().install_recorder().expect("no other recorder in this process");

    // Exported from the start, at 0, once the endpoint serves.
    let options = SocketOptions {
        longpoll: true,
        max_outbound_bytes: 256 * 1024,
        check_origin: CheckOrigin::allow(["http://allowed.example"]).unwrap(),
        ..SocketOptions::default()
    };
    let s = serve(options).await;
    // Served from a task of its own: wait for its router.
    eventually("the endpoint serves", || recorded(&prometheus).contains_key("channels_connections_open")).await;
    let now = recorded(&prometheus);
    for series in [
        "channels_connections_accepted_total",
        "channels_connections_open",
        "channels_channels_open",
        "channels_outbound_queued_bytes",
        "channels_slow_consumers_total",
        "channels_broadcasts_total",
        "channels_deliveries_total",
        "channels_connections_refused_total{reason=origin}",
        "channels_connections_refused_total{reason=crash}",
    ] {
        assert_eq!(now.get(series), Some(&0.0), "{series} at the start, in {now:?}");
    }

    // Refusals, by reason.
    let origin = ("origin", "http://allowed.example");
    assert_eq!(upgrade_status(s.addr, "vsn=2.0.0", &[("origin", "http://evil.example")]).await, 403);
    assert_eq!(upgrade_status(s.addr, "vsn=9.0.0", &[origin]).await, 403);
    assert_eq!(upgrade_status(s.addr, "vsn=2.0.0&token=invalid", &[origin]).await, 403);
    assert_eq!(upgrade_status(s.addr, "vsn=2.0.0&token=panic", &[origin]).await, 500);
    for reason in ["origin", "vsn", "connect", "crash"] {
        assert_eq!(
            get(&prometheus, &format!("channels_connections_refused_total{{reason={reason}}}")),
            1.0,
            "{reason}"
        );
    }
    let capped = serve_with(Endpoint::new().max_connections(1), SocketOptions::default()).await;
    let first = Raw::v2(capped.addr).await;
    assert_eq!(upgrade_status(capped.addr, "vsn=2.0.0", &[]).await, 503);
    assert_eq!(get(&prometheus, "channels_connections_refused_total{reason=limit}"), 1.0);
    first.close().await;

    // A LongPoll session is a connection and a session while it lasts.
    let opened = s.longpoll("GET", "vsn=2.0.0", "application/json", "").await;
    assert_eq!(opened["status"], 410);
    assert_eq!(get(&prometheus, "channels_longpoll_sessions"), 1.0);

    // A client that stops reading: what waits for it is counted while it
    // waits, and nothing once it is closed as too slow.
    let mut slow = non_reader(s.addr).await;
    assert_eq!(slow.join("1", "echo:slow").await[4]["status"], "ok");
    assert_eq!(get(&prometheus, "channels_channels_open"), 1.0);
    let chunk = "x".repeat(16 * 1024);
    let mut peak = 0.0_f64;
    for _ in 0..2000 {
        s.endpoint.broadcast("echo:slow", "big", json!({ "b": chunk })).unwrap();
        peak = peak.max(get(&prometheus, "channels_outbound_queued_bytes"));
        if s.endpoint.metrics().slow_consumers > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(get(&prometheus, "channels_slow_consumers_total"), 1.0);
    assert!(peak > 64.0 * 1024.0, "the backlog was counted while the client did not read: peak {peak}");
    assert!(peak <= 256.0 * 1024.0, "never over the outbound limit: peak {peak}");
    assert_eq!(slow.close_code().await, Some(1008));
    eventually("the slow client's backlog is no longer counted", || {
        get(&prometheus, "channels_outbound_queued_bytes") == 0.0
    })
    .await;
    let broadcasts = get(&prometheus, "channels_broadcasts_total");
    assert!(broadcasts >= 1.0);
    assert_eq!(s.endpoint.metrics().broadcasts as f64, broadcasts, "the snapshot and the recorder agree");
    eventually("the slow client's channel ended", || get(&prometheus, "channels_channels_open") == 0.0).await;
    let joined = get(&prometheus, "channels_joins_total{channel=Echo,outcome=ok}");
    assert_eq!(joined, 1.0);
    assert_eq!(get(&prometheus, "channels_join_duration_seconds_count{channel=Echo}"), 1.0);
}
