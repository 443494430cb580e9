//! Memory after a large frame read: a 9 MB heartbeat from each of 20
//! clients must leave the process at its idle size (within 10 %) within a
//! second, over real sockets. Alone in its binary because it reads the
//! process's RSS (tests/hardening_rss.rs is the same for frames written).

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::time::{Duration, Instant};

use abuse_helpers::{mb, rss};
use raw_ws::{client_text, fix_mmap_threshold, heartbeat_client, short_frame};
use support::server;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_read_leave_memory_at_its_idle_size() {
    fix_mmap_threshold();
    const CLIENTS: usize = 20;
    let s = server().await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(heartbeat_client(s.addr).await);
    }
    let idle = rss();
    {
        // A 9 MB heartbeat from each (under the 10 MB frame limit), answered
        // with a short reply.
        let frame = client_text(
            format!(r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#, "x".repeat(9_000_000)).as_bytes(),
        );
        for c in &mut clients {
            c.write_all(&frame).await.unwrap();
        }
    }
    for c in &mut clients {
        assert!(short_frame(c).await.contains(r#""status":"ok""#));
    }
    let received = Instant::now();
    let mut after = rss();
    let peak = after;
    while received.elapsed() < Duration::from_secs(1) && after as f64 > idle as f64 * 1.10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = rss();
    }
    println!(
        "a 9 MB frame read from each of {CLIENTS} clients: RSS idle {:.1} MB, when answered {:.1} MB, {:?} later {:.1} MB",
        mb(idle),
        mb(peak),
        received.elapsed(),
        mb(after),
    );
    assert!(
        after as f64 <= idle as f64 * 1.10,
        "RSS stayed at {:.1} MB after the frames were read (idle: {:.1} MB)",
        mb(after),
        mb(idle)
    );
}
