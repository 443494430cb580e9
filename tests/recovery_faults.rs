//! No message lost across a reconnect, under real faults: a TCP proxy
//! inside the test cuts its connections at random moments, in both
//! directions and in the middle of frames, while broadcasts flow to 50
//! phoenix.js subscribers (the npm package, unchanged: tests/js) and 50
//! Rust-client subscribers. With history every subscriber ends with every
//! broadcast exactly once and in order; the same run without history
//! loses broadcasts, which is what the checker catches.
//!
//! The proxy's randomness comes from a seed printed by each run
//! (`FAULT_SEED=<seed>` replays it).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use phx_channels::client::{Backoff, Recovery, RecvError, Socket as ClientSocket};
use phx_channels::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

// ---------------------------------------------------------------- the server

socket! {
    pub FaultSocket {
        channel "kept:*" => Kept;
        channel "plain:*" => Plain;
    }
}

impl Connect for FaultSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

/// A topic that keeps its last 10 000 broadcasts for a minute: a client
/// that fell behind (a loaded CI machine, a debug build) still finds what
/// it missed.
pub struct Kept;

#[channel(socket = FaultSocket, history(size = 10000, age = "1m"))]
impl Kept {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Kept))
    }
}

/// The same topic without history: at most once, as Phoenix.
pub struct Plain;

#[channel(socket = FaultSocket)]
impl Plain {
    async fn join(_topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Plain))
    }
}

// ---------------------------------------------------------------- the proxy

/// Forwards TCP to the server; while `cutting`, every connection is cut
/// when it has carried a random number of bytes one way or the other, or
/// lived a random time: the bytes of the read in hand are forwarded only
/// up to the budget (the middle of a frame, almost always), then both
/// directions are closed.
struct Proxy {
    addr: SocketAddr,
    cutting: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

async fn proxy(to: SocketAddr, seed: u64) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cutting = Arc::new(AtomicBool::new(std::env::var("FAULT_NOCUT").is_err()));
    let cuts = Arc::new(AtomicU64::new(0));
    let (on, count) = (cutting.clone(), cuts.clone());
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        while let Ok((client, _)) = listener.accept().await {
            let cut = on.load(Ordering::Relaxed);
            // Budgets: server→client 4..300 KB (from a few dozen frames to
            // a few seconds of this test's stream); client→server usually
            // unbounded, one connection in five cut within its first 400
            // bytes (the upgrade, the join, a heartbeat).
            let down = if cut { rng.u64(4_000..300_000) } else { u64::MAX };
            let up = if cut && rng.u64(0..5) == 0 { rng.u64(1..400) } else { u64::MAX };
            // and some die of old age, traffic or not
            let life = if cut { Duration::from_millis(rng.u64(300..8_000)) } else { Duration::from_secs(3600) };
            let count = count.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else { return };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let born = Instant::now();
                let deadline = born + life;
                let (upc, downc) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
                let (why, cut) = tokio::select! {
                    cut = pump(cr, sw, up, upc.clone()) => ("up", cut),
                    cut = pump(sr, cw, down, downc.clone()) => ("down", cut),
                    () = tokio::time::sleep_until(deadline) => ("life", true),
                };
                if std::env::var("FAULT_TRACE").is_ok() {
                    eprintln!(
                        "conn lived {:?} up {} down {} {why} {cut}",
                        born.elapsed(),
                        upc.load(Ordering::Relaxed),
                        downc.load(Ordering::Relaxed)
                    );
                }
                if cut {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                // Dropping the halves closes both connections.
            });
        }
    });
    Proxy { addr, cutting, cuts }
}

/// Copies `src` to `dst` until `budget` bytes went through (then writes
/// what is left of the budget and says it cut) or either side closes.
async fn pump(
    mut src: tokio::net::tcp::OwnedReadHalf,
    mut dst: tokio::net::tcp::OwnedWriteHalf,
    budget: u64,
    moved: Arc<AtomicU64>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = budget;
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let send = (n as u64).min(left) as usize;
        moved.fetch_add(send as u64, Ordering::Relaxed);
        if dst.write_all(&buf[..send]).await.is_err() {
            return false;
        }
        left -= send as u64;
        if left == 0 {
            return true;
        }
    }
}

// ---------------------------------------------------------------- the subscribers

/// What one subscriber was handed.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    received: u64,
    duplicates: u64,
    disorders: u64,
    missing: u64,
    rejoins: u64,
    not_recovered: u64,
}

impl Outcome {
    fn of(got: &[u64], n: u64, rejoins: u64, not_recovered: u64) -> Self {
        let mut seen = std::collections::HashSet::new();
        let (mut duplicates, mut disorders) = (0, 0);
        for (i, x) in got.iter().enumerate() {
            if !seen.insert(*x) {
                duplicates += 1;
            }
            if i > 0 && *x <= got[i - 1] {
                disorders += 1;
            }
        }
        // Every subscriber joined before the first broadcast.
        let missing = (1..=n).filter(|x| !seen.contains(x)).count() as u64;
        Outcome { received: got.len() as u64, duplicates, disorders, missing, rejoins, not_recovered }
    }
}

/// A Rust-client subscriber through the proxy: records the `n` of every
/// `shout` it is handed until it has `n` = `last`, or nothing came for 2 s
/// after `done`.
async fn rust_subscriber(url: String, topic: String, recover: bool, last: u64, done: Arc<AtomicBool>) -> Outcome {
    let quick = Backoff::steps([Duration::from_millis(20)], Duration::from_millis(50));
    // room for every broadcast: the test checks the server, not how fast
    // a debug build reads
    let buffer = usize::try_from(last).unwrap() + 100;
    let socket =
        ClientSocket::builder(&url).reconnect_after(quick.clone()).rejoin_after(quick).event_buffer(buffer).connect();
    let (chan, _): (_, Value) = loop {
        match channel(&socket, &topic, recover).join(json!({})).await {
            Ok(joined) => break joined,
            // a cut during the first join: try again
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut events = chan.events();
    if std::env::var("FAULT_TRACE").is_ok() {
        let mut socket_events = socket.events();
        let mut states = chan.watch_state();
        let id = format!("{:p}", &socket);
        let t0 = Instant::now();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    e = socket_events.recv() => match e { Some(e) => eprintln!("{id} {:?} socket {e:?}", t0.elapsed()), None => break },
                    c = states.changed() => { if c.is_err() { break } eprintln!("{id} {:?} chan {:?}", t0.elapsed(), *states.borrow()); }
                }
            }
        });
    }
    let (mut got, mut rejoins, mut not_recovered, mut recoveries) = (Vec::new(), 0, 0, 0);
    let mut quiet_since = Instant::now();
    loop {
        let event = match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Ok(event)) => event,
            // Dropped by the client for being read too slowly: what it
            // dropped counts as missing.
            Ok(Err(RecvError::Lagged(dropped))) => {
                eprintln!("a Rust subscriber lagged: {dropped} events dropped");
                continue;
            }
            Ok(Err(RecvError::Closed)) => break,
            Err(_) => {
                if done.load(Ordering::Relaxed) && quiet_since.elapsed() > Duration::from_secs(5) {
                    break;
                }
                continue;
            }
        };
        quiet_since = Instant::now();
        match event.event.as_str() {
            "shout" => {
                let n = shout_n(&event.payload);
                got.push(n);
                if n == last {
                    break;
                }
            }
            "phx_recovery" => {
                recoveries += 1;
                if recoveries > 1 {
                    rejoins += 1;
                    if !event.payload.decode::<Recovery>().unwrap().recovered {
                        eprintln!("not recovered: {:?} after {:?}", event.payload, got.last());
                        not_recovered += 1;
                    }
                }
            }
            _ => {}
        }
    }
    socket.disconnect();
    Outcome::of(&got, last, rejoins, not_recovered)
}

/// The `n` of a shout's `{"n": N}` (read without a JSON decoder: 50
/// clients in a debug build read half a million of them).
fn shout_n(payload: &Payload) -> u64 {
    let json = payload.as_json().expect("a JSON payload");
    json.trim_start_matches("{\"n\":").trim_end_matches('}').parse().unwrap_or_else(|_| panic!("not a shout: {json}"))
}

fn channel(socket: &ClientSocket, topic: &str, recover: bool) -> phx_channels::client::ChannelBuilder {
    let builder = socket.channel(topic).timeout(Duration::from_secs(3));
    if recover {
        builder.recover()
    } else {
        builder
    }
}

// ---------------------------------------------------------------- a run

struct Run {
    broadcasts: u64,
    subscribers: usize,
    history: bool,
    /// One broadcast every this long.
    pace: Duration,
}

struct Report {
    rust: Vec<Outcome>,
    js: Vec<Outcome>,
    cuts: u64,
}

fn seed() -> u64 {
    std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64)
    })
}

async fn run(run: Run) -> Report {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let seed = seed();
    println!("FAULT_SEED={seed}");
    let endpoint = Endpoint::new().socket("/socket", FaultSocket);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    tokio::spawn(endpoint.clone().serve_on(listener));
    let proxy = proxy(server, seed).await;
    let url = format!("ws://{}/socket", proxy.addr);
    let topic = if run.history { "kept:faults" } else { "plain:faults" };

    // phoenix.js, in one node process
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("tests/js/lib/recovery-peers.mjs");
    assert!(root.join("tests/js/node_modules/phoenix").is_dir(), "phoenix.js is missing: run `npm ci` in tests/js");
    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .args([
            &url,
            topic,
            &std::env::var("FAULT_JS").unwrap_or(run.subscribers.to_string()),
            &run.broadcasts.to_string(),
        ])
        .arg(if run.history { "1" } else { "0" })
        .current_dir(root.join("tests/js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Node.js >= 20) must be installed to run the phoenix.js subscribers");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut stdin = node.stdin.take().unwrap();

    // The Rust clients, on a runtime of their own (as node runs the
    // phoenix.js ones in a process of its own): the server's and the
    // proxy's tasks do not queue behind theirs.
    let done = Arc::new(AtomicBool::new(false));
    let clients = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let rust: Vec<_> = (0..run.subscribers)
        .map(|_| {
            clients.spawn(rust_subscriber(url.clone(), topic.to_owned(), run.history, run.broadcasts, done.clone()))
        })
        .collect();

    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("phoenix.js peers ready");
    let ready: Value = serde_json::from_str(&ready.unwrap().expect("a line")).unwrap();
    assert!(ready["ready"].is_number(), "{ready}");
    // every Rust client joined too: its subscription is on the topic
    let pubsub = endpoint.pubsub().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pubsub.subscriber_count(topic) < run.subscribers + ready["ready"].as_u64().unwrap() as usize {
        assert!(Instant::now() < deadline, "the Rust clients did not join");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The broadcasts, at a steady pace, while connections are cut: from a
    // thread of their own, as a busy application's would come from many
    // tasks (a loop on one of the runtime's two workers would hold back the
    // tasks it wakes).
    let (every, total) = (run.pace, run.broadcasts);
    let sender = pubsub.clone();
    let topic_owned = topic.to_owned();
    let broadcaster = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        for n in 1..=total {
            sender.broadcast(&topic_owned, "shout", json!({"n": n})).unwrap();
            if n % 10 == 0 {
                let due = started + every * u32::try_from(n).unwrap();
                if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        started.elapsed()
    });
    let took = tokio::task::spawn_blocking(move || broadcaster.join().unwrap()).await.unwrap();
    println!("{total} broadcasts in {took:?}");
    proxy.cutting.store(false, Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    stdin.write_all(b"done\n").await.unwrap();

    // Every subscriber has reported within a minute of the last broadcast
    // (each ends at the last one, or after 5 s with nothing new): the whole
    // test is bounded, whatever goes wrong.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outcomes = Vec::new();
    for task in rust {
        outcomes.push(tokio::time::timeout_at(deadline, task).await.expect("a Rust subscriber ends").unwrap());
    }
    let line = tokio::time::timeout_at(deadline, lines.next_line()).await.expect("phoenix.js peers report");
    let report: Value = serde_json::from_str(&line.unwrap().expect("a line")).unwrap();
    let js: Vec<Outcome> = serde_json::from_value(report["peers"].clone()).unwrap_or_else(|e| panic!("{e}: {report}"));
    let _ = node.wait().await;
    clients.shutdown_background();
    Report { rust: outcomes, js, cuts: proxy.cuts.load(Ordering::Relaxed) }
}

fn total(outcomes: &[Outcome], field: fn(&Outcome) -> u64) -> u64 {
    outcomes.iter().map(field).sum()
}

/// One run at a time: each needs the machine's two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_every_subscriber_gets_every_broadcast_once_in_order_through_cuts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let subscribers = std::env::var("FAULT_SUBS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let (pace, broadcasts) = (Duration::from_millis(2), 10_000);
    let report = run(Run { broadcasts, subscribers, history: true, pace }).await;
    let all: Vec<(&str, &Outcome)> =
        report.rust.iter().map(|o| ("rust", o)).chain(report.js.iter().map(|o| ("phoenix.js", o))).collect();
    assert_eq!(all.len(), report.rust.len() * 2);
    for (i, (who, o)) in all.iter().enumerate() {
        eprintln!("{i} {who} {o:?}");
    }
    for (i, (who, o)) in all.iter().enumerate() {
        assert!(
            o.received == broadcasts && o.missing == 0 && o.duplicates == 0 && o.disorders == 0 && o.not_recovered == 0,
            "subscriber {i} ({who}): {o:?}"
        );
    }
    let rejoins = total(&report.rust, |o| o.rejoins) + total(&report.js, |o| o.rejoins);
    println!("{} cuts, {rejoins} rejoins, every subscriber complete", report.cuts);
    assert!(report.cuts >= 200, "the proxy cut only {} connections", report.cuts);
    assert!(rejoins >= 100, "only {rejoins} rejoins: the cuts did not reach the subscribers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_the_same_cuts_lose_broadcasts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run(Run { broadcasts: 2_500, subscribers: 10, history: false, pace: Duration::from_millis(2) }).await;
    let missing_rust = total(&report.rust, |o| o.missing);
    let missing_js = total(&report.js, |o| o.missing);
    println!("{} cuts; lost: {missing_rust} (Rust clients), {missing_js} (phoenix.js)", report.cuts);
    // the checker that passes the run with history catches the loss here
    assert!(missing_rust > 0 && missing_js > 0, "no loss without history? {missing_rust} / {missing_js}");
}
