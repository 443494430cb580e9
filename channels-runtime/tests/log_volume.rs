//! What a hostile client can make the server log, over real sockets:
//! floods of refusals (joins with huge topics, upgrades with huge `Origin`
//! and `vsn`, malformed frames, LongPoll sessions opened too fast) leave a
//! bounded amount of log: every peer-supplied field is clipped, and each
//! reason logs one line per interval, the rest counted in the next line of
//! that reason and in the metrics.
//!
//! Its own binary: it installs a process-wide capturing subscriber and
//! measures everything logged.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::time::Duration;

use abuse_helpers::{Logs, Raw};
use phx_channels_runtime::SocketOptions;

const REFUSALS: usize = 500;
const TOPIC_BYTES: usize = 50_000;

fn capture() -> Logs {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    logs
}

// The clock is paused: the throttles' intervals pass when the test says.
#[tokio::test(start_paused = true)]
async fn floods_of_refusals_log_a_bounded_volume() {
    let logs = capture();
    let s = support::serve(SocketOptions {
        max_joins_per_second: 0,
        max_topic_bytes: 0,
        longpoll: true,
        ..SocketOptions::default()
    })
    .await;

    // Refused joins with huge topics; each refusal echoes the topic, read
    // as they go (a client that never reads would block the server's
    // writes).
    let mut c = Raw::v2(s.addr).await;
    let huge = "x".repeat(TOPIC_BYTES);
    for batch in 0..REFUSALS / 10 {
        for i in batch * 10..batch * 10 + 10 {
            c.feed(format!(r#"["{i}","{i}","nothing:{huge}","phx_join",{{}}]"#)).await;
        }
        c.flush().await;
        for _ in 0..10 {
            assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
        }
    }
    // One accepted join on a 5 MB topic (no topic limit here): its lines
    // are clipped too.
    let giant = format!("echo:{}", "y".repeat(5_000_000));
    assert_eq!(c.join("j", &giant).await[4]["status"], "ok");
    c.close().await;

    // Upgrades refused for their 60 KB Origin, or their 30 KB vsn.
    let origin = format!("https://{}.example", "o".repeat(60_000));
    let vsn = "9".repeat(30_000);
    for _ in 0..100 {
        assert_eq!(support::upgrade_status(s.addr, "vsn=2.0.0", &[("origin", &origin)]).await, 403);
        assert_eq!(support::upgrade_status(s.addr, &format!("vsn={vsn}"), &[]).await, 403);
    }
    // Malformed frames, from many connections.
    for _ in 0..100 {
        let mut c = Raw::v2(s.addr).await;
        assert!(c.text(format!("[\"{}\"", "z".repeat(10_000))).await);
        assert_eq!(c.close_code().await, Some(1007));
    }
    // LongPoll sessions opened faster than a source may.
    for _ in 0..100 {
        support::http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
    }

    // The next interval: one more of each, and the summaries of what was
    // held back come with them.
    tokio::time::advance(Duration::from_secs(11)).await;
    let mut c = Raw::v2(s.addr).await;
    c.text(format!(r#"["1","1","nothing:{huge}","phx_join",{{}}]"#)).await;
    assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
    assert_eq!(support::upgrade_status(s.addr, "vsn=2.0.0", &[("origin", &origin)]).await, 403);
    assert_eq!(support::upgrade_status(s.addr, &format!("vsn={vsn}"), &[]).await, 403);
    let mut bad = Raw::v2(s.addr).await;
    assert!(bad.text("[").await);
    assert_eq!(bad.close_code().await, Some(1007));
    for _ in 0..30 {
        support::http(s.addr, "GET", "/socket/longpoll?vsn=2.0.0", &[], "").await;
    }

    let text = logs.text();
    let count = |needle: &str| logs.lines_with(&[needle]).len();
    println!(
        "{REFUSALS} refused joins with {TOPIC_BYTES}-byte topics, one 5 MB join, 200 upgrades with a 60 KB Origin or a \
         30 KB vsn, 100 malformed frames, 130 LongPoll opens: {} bytes of logs, {} lines",
        text.len(),
        text.lines().count()
    );
    for (what, summary) in [
        ("join on a topic no route matches", "499 more suppressed"),
        ("origin not allowed", "99 more suppressed"),
        ("unsupported vsn", "99 more suppressed"),
        ("malformed frame", "99 more suppressed"),
        ("too many LongPoll sessions opened", "more suppressed"),
    ] {
        // The first of each interval, and the count of the rest.
        assert_eq!(count(what), 3, "{what}: one line per interval\n{text}");
        assert_eq!(logs.lines_with(&[what, summary]).len(), 1, "{what}: the second line counts the rest\n{text}");
    }
    let refusals = logs.lines_with(&["join on a topic no route matches"]);
    assert!(refusals[0].contains("(50008 bytes)"), "the topic's length is kept: {}", refusals[0]);
    let origin_line = &logs.lines_with(&["origin not allowed"])[0];
    assert!(origin_line.contains("(60016 bytes)"), "the origin is clipped: {origin_line}");
    for line in text.lines() {
        assert!(line.len() < 600, "a {}-byte line: {}…", line.len(), &line[..200]);
    }
    assert!(text.len() < 16 * 1024, "{} bytes of logs", text.len());
    // What the log holds back, the metrics count.
    let m = s.endpoint.metrics();
    assert!(m.connections_refused > 202, "origin, vsn and LongPoll refusals: {}", m.connections_refused);
    assert_eq!(m.malformed_frames, 101);
}
