//! Soak: many clients joining, pushing, shouting, leaving, disconnecting and
//! reconnecting at random against one server in this process; every push is
//! answered, and memory, file descriptors, tokio tasks, connections and
//! channels return to their baseline.
//!
//! The test run has a short version (300 clients, 4 s warm-up + 16 s). The long one, by hand:
//!
//! ```text
//! SOAK_CLIENTS=2000 SOAK_SECS=240 cargo test -p phx-channels-runtime --release --test soak -- --nocapture
//! ```
//!
//! Each connection costs two file descriptors here (client and server end).

#[path = "support/abuse_helpers.rs"]
mod abuse_helpers;
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use abuse_helpers::{fds, mb, rss, settle, tasks, Got, Raw};
use phx_channels_runtime::SocketOptions;
use serde_json::Value;
use support::serve;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// xorshift64*: reproducible per-client randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    replied: AtomicU64,
    lost: AtomicU64,
    wrong: AtomicU64,
    connects: AtomicU64,
    joins: AtomicU64,
    leaves: AtomicU64,
    shouts: AtomicU64,
    broadcasts_seen: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Sends `frame` and waits for the `phx_reply` to `msg_ref`, counting it;
/// other frames (broadcasts, phx_close) are skipped. Returns the reply, or
/// `None` if it never came (the client then reconnects).
async fn request(c: &mut Raw, counts: &Counts, msg_ref: &str, frame: String) -> Option<Value> {
    Counts::add(&counts.sent);
    if !c.text(frame).await {
        Counts::add(&counts.lost);
        return None;
    }
    loop {
        match c.next_within(Duration::from_secs(15)).await {
            Got::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v[3] == "phx_reply" && v[1] == msg_ref {
                    Counts::add(&counts.replied);
                    return Some(v);
                }
                if v[0].is_null() && v[1].is_null() {
                    Counts::add(&counts.broadcasts_seen);
                }
            }
            Got::Binary(_) => {}
            other => {
                eprintln!("no reply to {msg_ref}: {other:?}");
                Counts::add(&counts.lost);
                return None;
            }
        }
    }
}

async fn client(addr: std::net::SocketAddr, id: u64, topics: u64, until: Instant, counts: Arc<Counts>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
    let mut n = 0u64;
    while Instant::now() < until {
        let mut c = Raw::v2(addr).await;
        Counts::add(&counts.connects);
        let mut joined: Vec<u64> = Vec::new();
        loop {
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20 + rng.below(180))).await;
            n += 1;
            let r = format!("{id}-{n}");
            let roll = rng.below(100);
            let ok = if roll < 5 {
                // disconnect and reconnect
                break;
            } else if roll < 25 || joined.is_empty() {
                let t = rng.below(topics);
                let reply =
                    request(&mut c, &counts, &r, format!(r#"["{r}","{r}","echo:soak{t}","phx_join",{{}}]"#)).await;
                let ok = reply.as_ref().map(|v| v[4]["status"] == "ok");
                if ok == Some(true) {
                    Counts::add(&counts.joins);
                    // a rejoin of a topic already joined displaces it
                    joined.retain(|j| *j != t);
                    joined.push(t);
                }
                ok
            } else if roll < 35 {
                let t = joined.swap_remove(rng.below(joined.len() as u64) as usize);
                let reply =
                    request(&mut c, &counts, &r, format!(r#"[null,"{r}","echo:soak{t}","phx_leave",{{}}]"#)).await;
                Counts::add(&counts.leaves);
                reply.map(|v| v[4]["status"] == "ok")
            } else if roll < 45 {
                let reply = request(&mut c, &counts, &r, format!(r#"[null,"{r}","phoenix","heartbeat",{{}}]"#)).await;
                reply.map(|v| v[4]["status"] == "ok")
            } else if roll < 50 {
                let t = joined[rng.below(joined.len() as u64) as usize];
                Counts::add(&counts.shouts);
                let frame = format!(r#"[null,"{r}","echo:soak{t}","shout",{{"from":{id},"n":{n}}}]"#);
                request(&mut c, &counts, &r, frame).await.map(|v| v[4]["status"] == "ok")
            } else {
                let t = joined[rng.below(joined.len() as u64) as usize];
                let frame = format!(r#"[null,"{r}","echo:soak{t}","ping",{{"n":{n}}}]"#);
                request(&mut c, &counts, &r, frame).await.map(|v| v[4]["status"] == "ok" && v[4]["response"]["n"] == n)
            };
            match ok {
                Some(true) => {}
                Some(false) => Counts::add(&counts.wrong),
                None => break,
            }
        }
        // half the time a clean close, else the TCP connection just drops
        if rng.below(2) == 0 {
            c.close().await;
        } else {
            drop(c);
        }
    }
}

async fn soak(clients: u64, secs: u64) {
    let s = serve(SocketOptions::default()).await;
    let topics = (clients / 25).max(8);
    let topic_names: Vec<String> = (0..topics).map(|t| format!("echo:soak{t}")).collect();
    let topic_refs: Vec<&str> = topic_names.iter().map(String::as_str).collect();

    // Warm-up: every client for a quarter of the run (at most 15 s), so the
    // baseline includes what the server and the allocator keep after a peak
    // of this size (glibc holds on to fragmented arenas even after
    // malloc_trim); growth after it, across the measured run, is what a leak
    // would show.
    let warm = Arc::new(Counts::default());
    let until = Instant::now() + Duration::from_secs((secs / 4).clamp(1, 15));
    let warmers: Vec<_> =
        (0..clients).map(|i| tokio::spawn(client(s.addr, 1_000_000 + i, topics, until, warm.clone()))).collect();
    for w in warmers {
        w.await.unwrap();
    }
    settle(&s.endpoint, &topic_refs).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (rss0, fds0, tasks0) = (rss(), fds(), tasks());

    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let counts = counts.clone();
            let addr = s.addr;
            tokio::spawn(async move {
                // stagger the first connects over a second
                tokio::time::sleep(Duration::from_millis(i * 1000 / clients.max(1))).await;
                client(addr, i, topics, until, counts).await;
            })
        })
        .collect();
    // sample the peak while it runs
    let mut peak = (0u64, 0usize, 0usize, 0u64);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let m = s.endpoint.metrics();
        peak = (peak.0.max(rss()), peak.1.max(fds()), peak.2.max(tasks()), peak.3.max(m.channels_open));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    let m = settle(&s.endpoint, &topic_refs).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, fds1, tasks1) = (rss(), fds(), tasks());
    // glibc keeps freed memory in its arenas after a peak; handing it back
    // to the kernel shows what is still in use (a leak would stay).
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe { libc::malloc_trim(0) };
    let rss_trimmed = rss();

    let sent = Counts::get(&counts.sent);
    let replied = Counts::get(&counts.replied);
    println!(
        "soak: {clients} clients, {topics} topics, {:.1} s: {} connects, {sent} requests ({:.0}/s), {replied} replied, \
         {} lost, {} wrong; {} joins, {} leaves, {} shouts, {} broadcasts received\n\
         \x20 server: joins={} channel_crashes={} messages_in={} frames_out={} slow_consumers={}\n\
         \x20 peak: RSS {:.1} MB, fds {}, tasks {}, channels_open {}\n\
         \x20 baseline -> end: RSS {:.1} -> {:.1} MB ({:.1} MB after malloc_trim), fds {fds0} -> {fds1}, tasks {tasks0} -> {tasks1}, \
         connections_open {}, channels_open {}",
        elapsed.as_secs_f64(),
        Counts::get(&counts.connects),
        sent as f64 / elapsed.as_secs_f64(),
        Counts::get(&counts.lost),
        Counts::get(&counts.wrong),
        Counts::get(&counts.joins),
        Counts::get(&counts.leaves),
        Counts::get(&counts.shouts),
        Counts::get(&counts.broadcasts_seen),
        m.joins,
        m.channel_crashes,
        m.messages_in,
        m.frames_out,
        m.slow_consumers,
        mb(peak.0),
        peak.1,
        peak.2,
        peak.3,
        mb(rss0),
        mb(rss1),
        mb(rss_trimmed),
        m.connections_open,
        m.channels_open,
    );
    assert!(sent > clients * secs, "the clients barely ran: {sent} requests");
    assert_eq!(sent, replied, "every request gets its reply");
    assert_eq!(Counts::get(&warm.sent), Counts::get(&warm.replied), "warm-up replies");
    assert_eq!(Counts::get(&counts.wrong), 0, "every reply is ok and echoes its payload");
    assert_eq!(m.channel_crashes, 0);
    assert_eq!(m.slow_consumers, 0);
    assert!(tasks1 <= tasks0, "tokio tasks: {tasks0} -> {tasks1}");
    assert!(fds1 <= fds0 + 2, "file descriptors: {fds0} -> {fds1}");
    // Growth proportional to the traffic would be a leak; what glibc keeps
    // after a peak is not, and malloc_trim hands it back.
    let margin = 16 * 1024 * 1024;
    assert!(
        rss_trimmed < rss0 + margin,
        "RSS {:.1} MB -> {:.1} MB ({:.1} MB after malloc_trim)",
        mb(rss0),
        mb(rss1),
        mb(rss_trimmed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_clients_joining_pushing_leaving_and_reconnecting_at_random() {
    soak(env("SOAK_CLIENTS", 300), env("SOAK_SECS", 16)).await;
}
