//! Handler panics over a real socket, with `RUST_BACKTRACE=1`: the runtime's
//! hook keeps them from the process's previous hook (the standard one
//! symbolises a backtrace on the worker, stalling its other channels),
//! resolves backtraces off the runtime's thread, rate-limits the reports,
//! and still passes every other panic to the previous hook.
//!
//! Its own binary: it sets `RUST_BACKTRACE` and a panic hook, both
//! process-wide, and counts process-wide rate limits, so it is one test.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use abuse_helpers::{Logs, Raw};
use phx_channels_runtime::panics::{BACKTRACES_PER_INTERVAL, REPORTS_PER_INTERVAL, REPORT_INTERVAL};
use phx_channels_runtime::SocketOptions;
use serde_json::json;

/// Panics the hook installed before the runtime's was asked to report.
static PREVIOUS_HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);

fn init() -> Logs {
    // Before anything reads it: std caches RUST_BACKTRACE on first use. The
    // harness runs this binary's one test alone.
    std::env::set_var("RUST_BACKTRACE", "1");
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PREVIOUS_HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
        standard(info);
    }));
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_thread_names(true)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    logs
}

fn previous_hook_calls() -> usize {
    PREVIOUS_HOOK_CALLS.load(Ordering::SeqCst)
}

#[tokio::test]
async fn handler_panics_are_reported_off_the_runtime_thread_rate_limited_and_nowhere_else() {
    let logs = init();
    let started = Instant::now();
    // A current-thread runtime: the test's thread is the only worker, so a
    // line logged from any other thread was logged off the runtime.
    let runtime_thread = std::thread::current().name().expect("the harness names test threads").to_owned();
    let s =
        support::serve(SocketOptions { max_joins_per_second: 0, max_channels: 1000, ..SocketOptions::default() }).await;

    // A panic outside any channel handler still reaches the previous hook.
    assert_eq!(s.refused_status("vsn=2.0.0&token=panic").await, 500);
    assert_eq!(previous_hook_calls(), 1, "connect's panic goes to the hook installed before");

    // The first handler panic: reported with its location and a backtrace
    // resolved off the runtime's thread; the previous hook never sees it.
    let mut c = Raw::v2(s.addr).await;
    assert_eq!(c.join("s", "echo:sibling").await[4]["status"], "ok");
    assert_eq!(c.join("1", "echo:p0").await[4]["status"], "ok");
    c.text(r#"["1","2","echo:p0","crash",{}]"#).await;
    assert_eq!(c.json().await, json!(["1", "1", "echo:p0", "phx_error", {"reason": "channel_crash"}]));
    let report = logs.wait_for(&["handler panicked", "backtrace="]).await;
    assert!(report.contains(r#"panic="crash on purpose""#), "{report}");
    assert!(report.contains("tests/support/mod.rs:"), "the location of the panic: {report}");
    assert!(
        !report.contains(&runtime_thread),
        "the backtrace was resolved on the runtime's thread ({runtime_thread}): {report}"
    );
    assert_eq!(previous_hook_calls(), 1, "a handler panic reached the previous hook");

    // A storm of panics on one socket: every channel crashes alone, the
    // sibling keeps answering, and the reports stay within the rate limit.
    const STORM: usize = 200;
    for i in 1..=STORM {
        c.feed(format!(r#"["{i}","{i}","echo:p{i}","phx_join",{{}}]"#)).await;
        c.feed(format!(r#"["{i}","c{i}","echo:p{i}","crash",{{}}]"#)).await;
    }
    c.feed(r#"["s","ping","echo:sibling","ping",{"alive":true}]"#.to_owned()).await;
    c.flush().await;
    let (mut crashes, mut sibling) = (0, None);
    while sibling.is_none() || crashes < STORM {
        let frame = c.json().await;
        match frame[3].as_str() {
            Some("phx_error") => crashes += 1,
            Some("phx_reply") if frame[2] == "echo:sibling" => sibling = Some(frame[4].clone()),
            _ => {}
        }
    }
    assert_eq!(sibling, Some(json!({"status": "ok", "response": {"alive": true}})));
    assert_eq!(previous_hook_calls(), 1, "handler panics reached the previous hook");

    // Reports logged from the spawned blocking tasks may still be on their way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reports = logs.lines_with(&["handler panicked"]).len();
    let backtraces = logs.lines_with(&["handler panicked", "backtrace="]).len();
    // The test spans at most this many windows of the rate limit.
    let windows = u32::try_from(started.elapsed().as_secs() / REPORT_INTERVAL.as_secs()).unwrap() + 2;
    assert!(reports >= 1);
    assert!(
        reports <= (REPORTS_PER_INTERVAL * windows) as usize,
        "{reports} reports for {} panics in {windows} windows",
        STORM + 1
    );
    assert!(backtraces <= (BACKTRACES_PER_INTERVAL * windows) as usize, "{backtraces} backtraces");
    let bytes = logs.text().len();
    println!("{} handler panics: {reports} reports ({backtraces} with a backtrace), {bytes} bytes of logs", STORM + 1);
    // Each crash still logs its one "channel crashed" line, clipped.
    assert_eq!(logs.lines_with(&["channel crashed"]).len(), STORM + 1);
}
