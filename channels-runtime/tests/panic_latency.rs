//! What a burst of handler panics costs a sibling channel on the same
//! socket, with `RUST_BACKTRACE=1`: the sibling pings in a closed loop, a
//! crash on another channel sent just before each ping. Prints the
//! sibling's worst and median reply times, quiet and during the burst (the
//! figures in BENCHMARKS.md); asserts only what does not depend on the
//! machine's speed: every crash is answered with `phx_error`, every ping.
//!
//! Its own binary: it sets `RUST_BACKTRACE` process-wide, and the figures
//! should not share the machine with other tests of the same binary.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::time::{Duration, Instant};

use abuse_helpers::Raw;
use phx_channels_runtime::SocketOptions;
use serde_json::json;

const PANICS: usize = 100;
const QUIET_PINGS: usize = 100;

/// Sends `before` (if any) then a sibling ping; the ping's reply time, and
/// how many `phx_error` frames came meanwhile.
async fn ping(c: &mut Raw, n: usize, before: Option<String>) -> (Duration, usize) {
    if let Some(frame) = before {
        c.feed(frame).await;
    }
    let started = Instant::now();
    c.text(format!(r#"["s","ping{n}","echo:sibling","ping",{{"n":{n}}}]"#)).await;
    let mut crashes = 0;
    loop {
        let frame = c.json().await;
        match frame[3].as_str() {
            Some("phx_error") => crashes += 1,
            Some("phx_reply") if frame[1] == format!("ping{n}") => {
                assert_eq!(frame[4], json!({"status": "ok", "response": {"n": n}}));
                return (started.elapsed(), crashes);
            }
            _ => {}
        }
    }
}

fn summary(times: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (worst_at, worst) = times.iter().enumerate().max_by_key(|(_, t)| **t).expect("some pings");
    let mut sorted = times.to_vec();
    sorted.sort();
    format!("worst {:.2} ms (ping {worst_at}), median {:.2} ms", ms(*worst), ms(sorted[sorted.len() / 2]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_panics_costs_a_sibling_channel_little() {
    // Before anything reads it: std caches RUST_BACKTRACE on first use.
    std::env::set_var("RUST_BACKTRACE", "1");
    let options = SocketOptions { max_joins_per_second: 0, max_channels: PANICS + 10, ..SocketOptions::default() };
    let s = support::serve(options).await;
    let mut c = Raw::v2(s.addr).await;
    assert_eq!(c.join("s", "echo:sibling").await[4]["status"], "ok");
    for i in 0..PANICS {
        assert_eq!(c.join(&i.to_string(), &format!("echo:p{i}")).await[4]["status"], "ok");
    }

    let mut quiet = Vec::new();
    for n in 0..QUIET_PINGS {
        quiet.push(ping(&mut c, n, None).await.0);
    }
    let (mut burst, mut crashes) = (Vec::new(), 0);
    for i in 0..PANICS {
        let crash = format!(r#"["{i}","c{i}","echo:p{i}","crash",{{}}]"#);
        let (took, crashed) = ping(&mut c, QUIET_PINGS + i, Some(crash)).await;
        burst.push(took);
        crashes += crashed;
    }
    // The last crashes may be answered after the last ping.
    while crashes < PANICS {
        assert_eq!(c.json().await[3], "phx_error");
        crashes += 1;
    }
    // The first panic is the one whose backtrace is captured and resolved.
    println!(
        "sibling ping with RUST_BACKTRACE=1: quiet {}; during {PANICS} panics {}, beside the first {:.2} ms",
        summary(&quiet),
        summary(&burst),
        burst[0].as_secs_f64() * 1000.0
    );
}
