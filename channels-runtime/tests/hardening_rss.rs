//! Memory after a large frame written: one 5 MB broadcast to 100 idle
//! subscribers must leave the process at its idle size (within 10 %) within
//! a second, over real sockets. Alone in its binary because it reads the
//! process's RSS (tests/hardening_rss_read.rs is the same for frames read).

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abuse_helpers::{mb, rss};
use raw_ws::{client_text, fix_mmap_threshold, upgraded};
use serde_json::json;
use support::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUBSCRIBERS: usize = 100;
const BODY: usize = 5 * 1024 * 1024;
const TOPIC: &str = "echo:rss-big";

/// Upgrades, joins `TOPIC` and reads the join reply.
async fn subscriber(addr: SocketAddr) -> TcpStream {
    let mut s = upgraded(addr).await;
    s.write_all(&client_text(format!(r#"["1","1","{TOPIC}","phx_join",{{}}]"#).as_bytes())).await.unwrap();
    // The join reply: a short unmasked text frame.
    let [_, len] = [s.read_u8().await.unwrap(), s.read_u8().await.unwrap()];
    let mut reply = vec![0; usize::from(len & 0x7f)];
    s.read_exact(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).contains(r#""status":"ok""#));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_broadcast_leaves_memory_at_its_idle_size() {
    fix_mmap_threshold();
    let s = server().await;
    let done = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut stream = subscriber(s.addr).await;
        let done = done.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 16 * 1024];
            let mut total = 0;
            let mut counted = false;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => total += n,
                }
                if total >= BODY && !counted {
                    counted = true;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    assert_eq!(s.endpoint.pubsub().subscriber_count(TOPIC), SUBSCRIBERS);
    // Every path runs once with small frames before the idle figure.
    s.endpoint.broadcast(TOPIC, "small", json!({"body": "warm"})).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss();

    s.endpoint.broadcast(TOPIC, "big", json!({ "body": "x".repeat(BODY) })).unwrap();
    let sent = Instant::now();
    while done.load(Ordering::SeqCst) < SUBSCRIBERS {
        assert!(sent.elapsed() < Duration::from_secs(30), "the broadcast never reached every subscriber");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delivered = sent.elapsed();
    let peak = rss();
    let received = Instant::now();
    let mut after = peak;
    while received.elapsed() < Duration::from_secs(1) && after as f64 > idle as f64 * 1.10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = rss();
    }
    println!(
        "a {} MB broadcast to {SUBSCRIBERS} idle subscribers: RSS idle {:.1} MB, when delivered ({delivered:?}) {:.1} MB, \
         {:?} later {:.1} MB",
        BODY >> 20,
        mb(idle),
        mb(peak),
        received.elapsed(),
        mb(after),
    );
    assert!(
        after as f64 <= idle as f64 * 1.10,
        "RSS stayed at {:.1} MB after the broadcast (idle: {:.1} MB)",
        mb(after),
        mb(idle)
    );
    for reader in readers {
        reader.abort();
    }
}
