//! What a hostile client can make the server log, over a real socket: a
//! flood of refused joins with huge topics leaves a bounded amount of log,
//! every line clipped, the rest counted in a summary line.
//!
//! Its own binary: it installs a process-wide capturing subscriber and
//! measures everything logged.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

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

#[tokio::test]
async fn refused_joins_with_huge_topics_log_a_bounded_volume() {
    let logs = capture();
    let s = support::serve(SocketOptions { max_joins_per_second: 0, ..SocketOptions::default() }).await;
    let mut c = Raw::v2(s.addr).await;
    let huge = "x".repeat(TOPIC_BYTES);
    // In batches, read as they go: each refusal echoes the topic, and a
    // client that never reads would block the server's writes.
    for batch in 0..REFUSALS / 10 {
        for i in batch * 10..batch * 10 + 10 {
            c.feed(format!(r#"["{i}","{i}","nothing:{huge}","phx_join",{{}}]"#)).await;
        }
        c.flush().await;
        for _ in 0..10 {
            assert_eq!(c.json().await[4]["response"]["reason"], "unmatched topic");
        }
    }
    // One accepted join on a 5 MB topic: its lines are clipped too.
    let giant = format!("echo:{}", "y".repeat(5_000_000));
    assert_eq!(c.join("j", &giant).await[4]["status"], "ok");
    c.close().await;
    // The throttle reports what it held back when its connection ends.
    let summary = logs.wait_for(&["more suppressed"]).await;
    let text = logs.text();
    let refusals = logs.lines_with(&["join on a topic no route matches"]);
    println!(
        "{REFUSALS} refused joins with {TOPIC_BYTES}-byte topics, one 5 MB join: {} bytes of logs, {} lines; {summary}",
        text.len(),
        text.lines().count()
    );
    assert!(refusals.len() < 20, "{} refusal lines logged", refusals.len());
    assert!(refusals[0].contains("(50008 bytes)"), "the topic's length is kept: {}", refusals[0]);
    for line in text.lines() {
        assert!(line.len() < 500, "a {}-byte line: {}…", line.len(), &line[..200]);
    }
    assert!(text.len() < 16 * 1024, "{} bytes of logs", text.len());
}
