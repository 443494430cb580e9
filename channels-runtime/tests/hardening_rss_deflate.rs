//! Decompression bombs over real sockets: clients that agreed to
//! permessage-deflate each send a 100 KB message that inflates to 100 MB.
//! Each is refused with 1009 once its output passes the 10 MB message
//! limit, and the server's peak memory while they all arrive at once stays
//! bounded by the few being inflated at a time (a worker thread inflates
//! one at a time), not by what they would inflate to. Alone in its binary
//! because it reads the process's memory.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::time::{Duration, Instant};

use abuse_helpers::{mb, rss};
use flate2::{Compress, Compression, FlushCompress};
use phx_channels_runtime::SocketOptions;
use raw_ws::fix_mmap_threshold;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 40;
const INFLATES_TO: usize = 100 << 20;

/// A message of `INFLATES_TO` zeros, as permessage-deflate sends it, made
/// without compressing 100 MB: after the first megabyte the window is all
/// zeros, and a sync-flushed megabyte of zeros compresses to the same
/// bytes whatever came before it.
fn bomb() -> Vec<u8> {
    let mb = vec![0u8; 1 << 20];
    let mut compress = Compress::new(Compression::best(), false);
    let flushed = |compress: &mut Compress| {
        let mut out = Vec::with_capacity(64 << 10);
        let start = compress.total_in();
        while compress.total_in() - start < mb.len() as u64 || out.len() == out.capacity() {
            let at = (compress.total_in() - start) as usize;
            compress.compress_vec(&mb[at..], &mut out, FlushCompress::Sync).unwrap();
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
        }
        out
    };
    let first = flushed(&mut compress);
    let next = flushed(&mut compress);
    let mut bomb = first;
    for _ in 1..INFLATES_TO >> 20 {
        bomb.extend_from_slice(&next);
    }
    // The trailer of the last sync flush goes: the receiver adds it.
    bomb.truncate(bomb.len() - 4);
    bomb
}

async fn agreed(addr: std::net::SocketAddr) -> TcpStream {
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let (s, head) = raw_ws::upgrade_at(addr, "/socket/websocket?vsn=2.0.0", offer).await;
    assert!(head.contains("permessage-deflate"), "{head}");
    s
}

/// Peak resident memory since the last reset (`VmHWM`), and the reset.
fn peak() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (Linux ≥ 4.0)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decompression_bombs_are_refused_within_the_message_limit() {
    fix_mmap_threshold();
    let s = support::serve(SocketOptions { compress: true, ..SocketOptions::default() }).await;
    let bomb = bomb();
    assert!(bomb.len() < 200_000, "{} bytes", bomb.len());
    let frame = std::sync::Arc::new(raw_ws::client_frame(0x80 | 0x40 | 0x2, &bomb));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(agreed(s.addr).await);
    }
    let idle = rss();
    reset_peak();

    let started = Instant::now();
    let sends = clients.into_iter().map(|mut c| {
        let frame = frame.clone();
        tokio::spawn(async move {
            c.write_all(&frame).await.unwrap();
            let mut head = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut head)).await.unwrap().unwrap();
            head
        })
    });
    for send in sends {
        let head = send.await.unwrap();
        assert_eq!(head[0], 0x88, "a close frame");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1009);
    }
    let took = started.elapsed();
    let peak = peak();
    println!(
        "{CLIENTS} bombs of {} KB that inflate to {} MB each, limit 10 MB: refused in {took:?}; RSS idle {:.1} MB, \
         peak {:.1} MB",
        bomb.len() >> 10,
        INFLATES_TO >> 20,
        mb(idle),
        mb(peak)
    );
    assert_eq!(s.endpoint.metrics().inputs_refused, CLIENTS as u64);
    // Inflated whole, they would be 4 GB; each is cut at 10 MB, and two
    // worker threads inflate at most two at a time.
    assert!(
        peak.saturating_sub(idle) < 64 << 20,
        "peak {:.1} MB over idle while refusing the bombs",
        mb(peak.saturating_sub(idle))
    );
}
