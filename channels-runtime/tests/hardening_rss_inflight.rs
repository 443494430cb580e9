//! Memory held by half-received messages, over real sockets: clients that
//! each announce a 9 MB frame (under the 10 MB message limit), send all of
//! it but the last kilobyte and stall must not hold 9 MB each. The
//! endpoint's in-flight budget (`ServerOptions::max_inflight_bytes`) bounds
//! them together: the messages over it are refused with 1013 ("try again
//! later") as their headers arrive. Alone in its binary because it reads
//! the process's RSS.

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
#[path = "support/raw_ws.rs"]
mod raw_ws;
mod support;

use std::time::Duration;

use abuse_helpers::{mb, rss};
use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::server::ServerOptions;
use phx_channels_runtime::SocketOptions;
use raw_ws::{client_text, fix_mmap_threshold, heartbeat_client, short_frame, upgraded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 40;
const ANNOUNCED: usize = 9_000_000;
const BUDGET: usize = 32 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_received_messages_are_bounded_by_the_inflight_budget() {
    fix_mmap_threshold();
    let endpoint =
        Endpoint::new().server_options(ServerOptions { max_inflight_bytes: BUDGET, ..ServerOptions::default() });
    let s = support::serve_with(endpoint, SocketOptions::default()).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(heartbeat_client(s.addr).await);
    }
    // One copy of the frame, shared by every client: counted in the idle
    // figure, so that what grows is the server's.
    let frame = std::sync::Arc::new(client_text(&vec![b'x'; ANNOUNCED]));
    let idle = rss();

    // All of a 9 MB frame but its last kilobyte, from every client at once.
    let sends = clients.into_iter().map(|mut c| {
        let frame = frame.clone();
        tokio::spawn(async move {
            let stalled = &frame[..frame.len() - 1000];
            // A refused client's writes fail once the server closes: fine.
            let _ = tokio::time::timeout(Duration::from_secs(20), c.write_all(stalled)).await;
            c
        })
    });
    let mut clients = Vec::new();
    for send in sends {
        clients.push(send.await.unwrap());
    }
    // What arrived has been read by now; let the server settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = rss();

    // The refused got a 1013 close frame; the others are still open.
    let mut refused = 0;
    for c in &mut clients {
        let mut head = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(100), c.read_exact(&mut head)).await {
            Ok(Ok(_)) if head[0] == 0x88 => {
                assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1013, "refused with 1013");
                refused += 1;
            }
            Ok(other) => panic!("unexpected answer {other:?} {head:?}"),
            Err(_) => {}
        }
    }
    let admitted = CLIENTS - refused;
    println!(
        "{CLIENTS} clients each holding all but 1 KB of a {} MB frame, budget {} MB: RSS idle {:.1} MB, held {:.1} MB; \
         {admitted} admitted, {refused} refused with 1013",
        ANNOUNCED / 1_000_000,
        BUDGET >> 20,
        mb(idle),
        mb(held),
    );
    assert!(admitted <= BUDGET / ANNOUNCED + 1, "{admitted} messages of 9 MB admitted under a 32 MiB budget");
    assert!(refused > 0);
    assert!(
        held.saturating_sub(idle) < (BUDGET as u64) + (16 << 20),
        "half-received messages hold {:.1} MB (budget {} MB)",
        mb(held.saturating_sub(idle)),
        BUDGET >> 20
    );
    assert_eq!(s.endpoint.metrics().inputs_refused, refused as u64);
    // Once the admitted clients leave, the budget is whole again: a new
    // large message goes through.
    drop(clients);
    support::eventually("every connection closed", || s.endpoint.connections() == 0).await;
    let mut c = upgraded(s.addr).await;
    let big = client_text(
        format!(r#"[null,"1","phoenix","heartbeat",{{"pad":"{}"}}]"#, "x".repeat(ANNOUNCED - 100)).as_bytes(),
    );
    c.write_all(&big).await.unwrap();
    assert!(short_frame(&mut c).await.contains(r#""status":"ok""#), "the budget was given back");
}
