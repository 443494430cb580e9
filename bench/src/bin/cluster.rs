//! `cluster`: many sockets over several `discuss` nodes that share one
//! broker (started by `bench/cluster.sh`), held by generator processes each
//! under the per-process file limit. Prints one JSON line per phase.
//!
//! ```text
//! cluster --nodes IP:PORT,.. --pids PID,.. [--broker-pids PID,..] [--token T] [--label NAME]
//!         [--sockets 4000] [--topics 100] [--rooms 10] [--procs K] [--concurrency 64]
//!         [--rate 200] [--duration 10] [--burst 1000] [--kill I] [--fail-duration 20]
//!         [--recover-share 0.5] [--back-timeout 120] [--settle 2]
//! ```
//!
//! Socket `i` connects to node `i mod N` (the generator chooses nodes; see
//! docs/scaling.md for why not SO_REUSEPORT), joins `comments:{(i/N) mod T}`
//! (every topic has subscribers on every node)
//! and, with `--rooms R > 0`, `room:scale-{i mod R}` with the presence
//! name `u{i}`. A `--recover-share` of the sockets (by a hash of i) ask for
//! positions (`phx_position`, docs/recovery.md) and rejoin with the last one
//! they saw; the others are plain Phoenix clients (at most once).
//!
//! Phases, in order, one JSON line each:
//! - `join`: every socket connects and joins; per node RSS per socket, CPU
//!   per connect + joins; the time until every node's watcher sees every
//!   presence.
//! - `deliveries`: one publisher socket per (node, up to 90 topics) pushes
//!   `comment:add` at `--rate` per second over all topics for `--duration`
//!   s; the publisher of topic t is on node `t mod (N-1)` (never the node
//!   `--kill` names). CPU per delivery per node, broker messages and CPU per
//!   broadcast, latency p50/p99 for subscribers on the publisher's node
//!   (local) and on others (cross-node).
//! - `presence`: `--burst` more sockets join rooms only; the time until
//!   every node's watcher sees all of them, CPU per presence join.
//! - `failover` (with `--kill I`): publishing as above for
//!   `--fail-duration` s; a third of the way in node I is killed (SIGKILL).
//!   Its sockets reconnect to the other nodes with phoenix.js's reconnect
//!   backoff (the Rust client's `Backoff::reconnect`) and rejoin. Messages
//!   lost per group (with and without positions), duplicates, the time
//!   until every socket is back, peak CPU of nodes and broker.
//!
//! Generator processes (`--procs`, default one per 12 000 sockets) are
//! this binary with `--child i/K`: they hold the sockets of index `i mod K`
//! and take commands on stdin (`reset`, `stats`, `burst A B`), answering
//! one JSON line each; they exit when stdin closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bench::client::{broker_stats, connect_node as connect, frame, AnyError, Parsed, Ws};
use bench::{loadavg, raise_nofile, round};
use futures_util::{SinkExt, StreamExt};
use phx_channels_client::Backoff;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio_tungstenite::tungstenite::Message;

/// Sockets one generator process holds by default (under the 20 000-file limit).
const PER_PROC: usize = 12_000;
/// Channels per publisher or watcher socket (the server allows 100).
const PER_SOCKET_CHANNELS: usize = 90;
/// Latency histogram: bucket k holds [1.05^k, 1.05^(k+1)) µs.
const BUCKETS: usize = 420;

#[derive(Clone, Debug)]
struct Args {
    label: String,
    nodes: Vec<SocketAddr>,
    pids: Vec<u32>,
    broker_pids: Vec<u32>,
    token: Option<String>,
    sockets: usize,
    topics: usize,
    rooms: usize,
    procs: usize,
    concurrency: usize,
    rate: f64,
    duration: f64,
    burst: usize,
    kill: Option<usize>,
    fail_duration: f64,
    /// Failover: how long to wait for every socket to be back.
    back_timeout: f64,
    recover_share: f64,
    /// Failover: fail when a socket that rejoined with its position lost or
    /// got twice any acknowledged broadcast (what history promises).
    strict: bool,
    settle: f64,
    child: Option<(usize, usize)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cluster --nodes IP:PORT,.. --pids PID,.. [--broker-pids PID,..] [--token T] [--label NAME] \
         [--sockets N] [--topics T] [--rooms R] [--procs K] [--concurrency C] [--rate R] [--duration S] \
         [--burst B] [--kill I] [--fail-duration S] [--recover-share F] [--back-timeout S] [--strict] [--settle S]"
    );
    std::process::exit(2)
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().unwrap_or_else(|_| usage())).collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        label: "discuss".into(),
        nodes: Vec::new(),
        pids: Vec::new(),
        broker_pids: Vec::new(),
        token: None,
        sockets: 4000,
        topics: 100,
        rooms: 10,
        procs: 0,
        concurrency: 64,
        rate: 200.0,
        duration: 10.0,
        burst: 1000,
        kill: None,
        fail_duration: 20.0,
        back_timeout: 120.0,
        recover_share: 0.5,
        strict: false,
        settle: 2.0,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| v.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--label" => a.label = val(),
            "--nodes" => a.nodes = list(&val()),
            "--pids" => a.pids = list(&val()),
            "--broker-pids" => a.broker_pids = list(&val()),
            "--token" => a.token = Some(val()).filter(|t| !t.is_empty()),
            "--sockets" => a.sockets = num(val()) as usize,
            "--topics" => a.topics = num(val()) as usize,
            "--rooms" => a.rooms = num(val()) as usize,
            "--procs" => a.procs = num(val()) as usize,
            "--concurrency" => a.concurrency = num(val()) as usize,
            "--rate" => a.rate = num(val()),
            "--duration" => a.duration = num(val()),
            "--burst" => a.burst = num(val()) as usize,
            "--kill" => a.kill = Some(num(val()) as usize),
            "--fail-duration" => a.fail_duration = num(val()),
            "--back-timeout" => a.back_timeout = num(val()),
            "--recover-share" => a.recover_share = num(val()),
            "--settle" => a.settle = num(val()),
            "--strict" => a.strict = true,
            "--child" => {
                let v = val();
                let (i, k) = v.split_once('/').unwrap_or_else(|| usage());
                a.child = Some((i.parse().unwrap_or_else(|_| usage()), k.parse().unwrap_or_else(|_| usage())));
            }
            _ => usage(),
        }
    }
    if a.nodes.is_empty() || (a.child.is_none() && a.nodes.len() != a.pids.len()) {
        usage();
    }
    if a.kill.is_some_and(|k| k >= a.nodes.len() || a.nodes.len() < 2) {
        eprintln!("--kill needs two nodes or more and a node index below their number");
        usage();
    }
    a.topics = a.topics.max(1);
    a.concurrency = a.concurrency.max(1);
    if a.procs == 0 {
        a.procs = a.sockets.div_ceil(PER_PROC).max(1);
    }
    a
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The node that publishes on topic `t`: any but the one to be killed.
fn publisher_node(args: &Args, t: usize) -> usize {
    let n = args.nodes.len();
    match args.kill {
        Some(k) if n > 1 => {
            let i = t % (n - 1);
            if i >= k {
                i + 1
            } else {
                i
            }
        }
        _ => t % n,
    }
}

/// The topic of socket `idx`: its rank on its node (`idx / N`) modulo the
/// topics, so every topic has subscribers on every node (as behind a load
/// balancer that places clients at random), whatever N and T are.
fn topic_of(args: &Args, idx: usize) -> usize {
    (idx / args.nodes.len()) % args.topics
}

/// Whether socket `idx` asks for positions: a `share` of the sockets,
/// spread evenly over nodes and topics (a multiplicative hash of the index,
/// not a range, which would put them on some nodes only).
fn takes_positions(idx: usize, share: f64) -> bool {
    let h = (idx as u64).wrapping_mul(2_654_435_761) % (1 << 32);
    (h as f64) < share * (1u64 << 32) as f64
}

// ---------------------------------------------------------------- sockets

/// `seq/node/unix_us` from a `comments:T:new` payload.
fn comment_content(payload: &str) -> Option<(u32, usize, u64)> {
    let at = payload.find("\"content\":\"")? + 11;
    let s = payload[at..].split('"').next()?;
    let mut f = s.split('/');
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

fn bucket(us: u64) -> usize {
    (((us.max(1) as f64).ln() / 1.05f64.ln()) as usize).min(BUCKETS - 1)
}

/// Percentile `p` of a histogram, in ms (the bucket's upper bound).
fn hist_ms(hist: &[u64], p: f64) -> Option<f64> {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return None;
    }
    let want = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return Some(round(1.05f64.powi(k as i32 + 1) / 1e3, 3));
        }
    }
    None
}

// ---------------------------------------------------------------- child

/// What one generator socket knows; all of them in one `Shared`.
#[derive(Default, Clone)]
struct Sock {
    topic: usize,
    recover: bool,
    /// A presence-only socket of the burst: joins no comments topic.
    room_only: bool,
    /// Its first node was killed and it moved.
    moved: bool,
    up: bool,
    seen: Vec<u64>,
    distinct: u32,
    dups: u32,
}

/// What happened to a generator's sockets, summed over processes by the parent.
#[derive(Default, Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Counters {
    /// Connections that ended after joining, and rejoins after one did.
    down_events: u64,
    back_events: u64,
    /// When the last socket came back (Unix µs).
    last_back_us: u64,
    /// Rejoins answered `recovered: true`, and the broadcasts they replayed.
    recovered: u64,
    missed: u64,
    /// Rejoins answered `recovered: false`, by reason.
    not_recovered: HashMap<String, u64>,
    /// `phx_error` on a topic (resync), rejoined.
    resyncs: u64,
    join_failed: u64,
    first_error: String,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.down_events += o.down_events;
        self.back_events += o.back_events;
        self.last_back_us = self.last_back_us.max(o.last_back_us);
        self.recovered += o.recovered;
        self.missed += o.missed;
        for (k, v) in &o.not_recovered {
            *self.not_recovered.entry(k.clone()).or_default() += v;
        }
        self.resyncs += o.resyncs;
        self.join_failed += o.join_failed;
        if self.first_error.is_empty() {
            self.first_error.clone_from(&o.first_error);
        }
    }
}

#[derive(Default)]
struct Shared {
    socks: Vec<Sock>,
    hist_local: Vec<u64>,
    hist_cross: Vec<u64>,
    /// Deliveries by the node the receiving socket is on.
    by_node: Vec<u64>,
    c: Counters,
}

impl Shared {
    fn reset(&mut self, nodes: usize) {
        for s in &mut self.socks {
            s.seen.clear();
            s.distinct = 0;
            s.dups = 0;
        }
        self.hist_local = vec![0; BUCKETS];
        self.hist_cross = vec![0; BUCKETS];
        self.by_node = vec![0; nodes];
        self.c.recovered = 0;
        self.c.not_recovered.clear();
        self.c.missed = 0;
        self.c.resyncs = 0;
    }

    fn deliver(&mut self, local: usize, node: usize, seq: u32, from: usize, sent_us: u64) {
        let s = &mut self.socks[local];
        let (word, bit) = (seq as usize / 64, seq % 64);
        if s.seen.len() <= word {
            s.seen.resize(word + 1, 0);
        }
        if s.seen[word] & (1 << bit) != 0 {
            s.dups += 1;
        } else {
            s.seen[word] |= 1 << bit;
            s.distinct += 1;
        }
        let b = bucket(unix_us().saturating_sub(sent_us));
        if from == node {
            self.hist_local[b] += 1;
        } else {
            self.hist_cross[b] += 1;
        }
        if let Some(n) = self.by_node.get_mut(node) {
            *n += 1;
        }
    }

    /// Per topic and class (recover × moved): [sockets, distinct, dups, up].
    fn report(&self, topics: usize) -> Value {
        let mut classes = vec![vec![[0u64; 4]; topics]; 4];
        for s in self.socks.iter().filter(|s| !s.room_only) {
            let c = usize::from(s.recover) * 2 + usize::from(s.moved);
            let row = &mut classes[c][s.topic];
            row[0] += 1;
            row[1] += u64::from(s.distinct);
            row[2] += u64::from(s.dups);
            row[3] += u64::from(s.up);
        }
        json!({
            "classes": classes,
            "hist_local": self.hist_local,
            "hist_cross": self.hist_cross,
            "by_node": self.by_node,
            "up": self.socks.iter().filter(|s| s.up).count(),
            "counters": self.c,
            "cpu_s": bench::cpu_seconds(std::process::id()),
        })
    }
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(s: &SharedRef) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One generator socket for its whole life: connects, joins, reads; when
/// the connection ends, reconnects to another node after phoenix.js's
/// reconnect backoff and rejoins (from its last position if it takes them).
async fn socket_life(
    args: Arc<Args>,
    idx: usize,
    local: usize,
    shared: SharedRef,
    first: tokio::sync::oneshot::Sender<bool>,
    room_only: bool,
) {
    let n = args.nodes.len();
    let home = idx % n;
    let topic_no = topic_of(&args, idx);
    let topic = format!("comments:{topic_no}");
    let event = format!("{topic}:new");
    let room = (args.rooms > 0).then(|| format!("room:scale-{}", (idx / n) % args.rooms));
    let name = if room_only { format!("b{idx}") } else { format!("u{idx}") };
    let recover = lock(&shared).socks[local].recover;
    let backoff = Backoff::reconnect();
    let mut first = Some(first);
    let mut position: Option<String> = None;
    let mut tries = 0u32;
    let mut node = home;
    loop {
        let joined = async {
            let mut ws = connect(args.nodes[node], idx).await?;
            let mut want = 0u32;
            if !room_only {
                let pos = match (&position, recover) {
                    (_, false) => String::new(),
                    (None, true) => ",\"phx_position\":null".into(),
                    (Some(p), true) => format!(",\"phx_position\":\"{p}\""),
                };
                ws.send(frame(Some("1"), "1", &topic, "phx_join", &format!("{{\"u\":{idx}{pos}}}"))).await?;
                want += 1;
            }
            if let Some(room) = &room {
                ws.send(frame(Some("2"), "2", room, "phx_join", &format!("{{\"name\":\"{name}\"}}"))).await?;
                want += 1;
            }
            Ok::<_, AnyError>((ws, want))
        };
        let (ws, mut want) = match tokio::time::timeout(Duration::from_secs(10), joined).await {
            Ok(Ok(x)) => x,
            failed => {
                let e = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".into(),
                };
                if let Some(tx) = first.take() {
                    let mut s = lock(&shared);
                    s.c.join_failed += 1;
                    if s.c.first_error.is_empty() {
                        s.c.first_error = e;
                    }
                    let _ = tx.send(false);
                }
                tries += 1;
                // Another node than the one that failed, spread over the others.
                node = (home + 1 + (idx / n + tries as usize) % (n - 1).max(1)) % n;
                tokio::time::sleep(backoff.delay(tries)).await;
                continue;
            }
        };
        let (mut sink, mut stream) = ws.split();
        let mut beat = tokio::time::interval(Duration::from_secs(25));
        beat.tick().await;
        let mut hb = 0u64;
        let mut join_no = 2u64;
        let was_down = tries > 0;
        let mut refused = false;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(_)) => continue,
                        _ => break,
                    };
                    let Ok((_, r, t, ev, payload)) = serde_json::from_str::<Parsed>(text.as_str()) else { continue };
                    let payload = payload.get();
                    if ev == event {
                        if let Some(p) = r.filter(|r| r.contains(':')) {
                            position = Some(p.to_owned());
                        }
                        if let Some((seq, from, sent)) = comment_content(payload) {
                            lock(&shared).deliver(local, node, seq, from, sent);
                        }
                    } else if ev == "phx_reply" && r.is_some_and(|r| r.starts_with('j')) {
                        // A resync's rejoin: refused, start over on a new connection.
                        if !payload.contains("\"status\":\"ok\"") {
                            break;
                        }
                    } else if ev == "phx_reply" && want > 0 && matches!(r, Some("1") | Some("2")) {
                        if !payload.contains("\"status\":\"ok\"") {
                            refused = true;
                            let mut s = lock(&shared);
                            if s.c.first_error.is_empty() {
                                s.c.first_error = format!("join {t}: {payload}");
                            }
                            break;
                        }
                        want = want.saturating_sub(1);
                        if want == 0 {
                            let mut s = lock(&shared);
                            s.socks[local].up = true;
                            if was_down {
                                s.c.back_events += 1;
                                s.c.last_back_us = s.c.last_back_us.max(unix_us());
                            }
                            drop(s);
                            tries = 0;
                            if let Some(tx) = first.take() {
                                let _ = tx.send(true);
                            }
                        }
                    } else if ev == "phx_recovery" {
                        let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
                        if let Some(p) = v["position"].as_str() {
                            position = Some(p.to_owned());
                        }
                        let mut s = lock(&shared);
                        if v["recovered"].as_bool() == Some(true) {
                            s.c.recovered += 1;
                            s.c.missed += v["missed"].as_u64().unwrap_or(0);
                        } else {
                            let reason = v["reason"].as_str().unwrap_or("?").to_owned();
                            *s.c.not_recovered.entry(reason).or_default() += 1;
                        }
                    } else if ev == "phx_error" && t == topic {
                        // resync (docs/recovery.md): rejoin from the last position.
                        lock(&shared).c.resyncs += 1;
                        join_no += 1;
                        let jr = format!("j{join_no}");
                        let pos = match (&position, recover) {
                            (Some(p), true) => format!(",\"phx_position\":\"{p}\""),
                            (None, true) => ",\"phx_position\":null".into(),
                            _ => String::new(),
                        };
                        if sink.send(frame(Some(&jr), &jr, &topic, "phx_join", &format!("{{\"u\":{idx}{pos}}}"))).await.is_err() {
                            break;
                        }
                    }
                }
                _ = beat.tick() => {
                    hb += 1;
                    if sink.send(frame(None, &format!("hb{hb}"), "phoenix", "heartbeat", "{}")).await.is_err() {
                        break;
                    }
                }
            }
        }
        {
            let mut s = lock(&shared);
            if s.socks[local].up {
                s.c.down_events += 1;
            }
            s.socks[local].up = false;
            s.socks[local].moved = true;
        }
        if let Some(tx) = first.take() {
            let _ = tx.send(false);
        }
        tries += 1;
        if refused {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        node = (home + 1 + (idx / n + tries as usize) % (n - 1).max(1)) % n;
        tokio::time::sleep(backoff.delay(tries)).await;
    }
}

/// Starts the lives of sockets `indices`, `concurrency` joins at a time;
/// returns how many joined at first.
async fn start_sockets(args: &Arc<Args>, shared: &SharedRef, indices: Vec<usize>, room_only: bool) -> u64 {
    let items: Vec<(usize, usize)> = {
        let mut s = lock(shared);
        indices
            .into_iter()
            .map(|idx| {
                let local = s.socks.len();
                let recover = !room_only && takes_positions(idx, args.recover_share);
                s.socks.push(Sock { topic: topic_of(args, idx), recover, room_only, ..Sock::default() });
                (idx, local)
            })
            .collect()
    };
    futures_util::stream::iter(items)
        .map(|(idx, local)| {
            let (args, shared) = (args.clone(), shared.clone());
            async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                tokio::spawn(socket_life(args, idx, local, shared, tx, room_only));
                rx.await.unwrap_or(false)
            }
        })
        .buffer_unordered(args.concurrency)
        .fold(0u64, |n, ok| async move { n + u64::from(ok) })
        .await
}

async fn child_main(args: Arc<Args>, shard: usize, shards: usize) {
    let shared: SharedRef = Arc::new(Mutex::new(Shared::default()));
    lock(&shared).reset(args.nodes.len());
    let mine: Vec<usize> = (0..args.sockets).filter(|i| i % shards == shard).collect();
    let joined = start_sockets(&args, &shared, mine, false).await;
    let say = |v: Value| {
        println!("{v}");
    };
    say(json!({"joined": joined, "report": lock(&shared).report(args.topics)}));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["reset"] => {
                lock(&shared).reset(args.nodes.len());
                say(json!({"reset": true}));
            }
            ["stats"] => say(lock(&shared).report(args.topics)),
            ["burst", a, b] => {
                let (a, b): (usize, usize) = (a.parse().unwrap_or(0), b.parse().unwrap_or(0));
                let mine: Vec<usize> = (a..b).filter(|i| i % shards == shard).collect();
                let joined = start_sockets(&args, &shared, mine, true).await;
                say(json!({"burst_joined": joined}));
            }
            _ => say(json!({"error": format!("unknown command {line}")})),
        }
    }
}

// ---------------------------------------------------------------- parent: generators

struct Generator {
    _child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Generator {
    async fn ask(&mut self, command: &str) -> Result<Value, AnyError> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.read().await
    }

    async fn read(&mut self) -> Result<Value, AnyError> {
        let line = self.stdout.next_line().await?.ok_or("a generator process exited")?;
        Ok(serde_json::from_str(&line)?)
    }
}

async fn ask_all(gens: &mut [Generator], command: &str) -> Result<Vec<Value>, AnyError> {
    let answers = futures_util::future::join_all(gens.iter_mut().map(|g| g.ask(command))).await;
    answers.into_iter().collect()
}

/// Sums the children's reports.
#[derive(Default, Debug)]
struct Totals {
    /// Per class (recover*2 + moved), per topic: [sockets, distinct, dups, up].
    classes: Vec<Vec<[u64; 4]>>,
    hist_local: Vec<u64>,
    hist_cross: Vec<u64>,
    by_node: Vec<u64>,
    up: u64,
    c: Counters,
    gen_cpu_s: f64,
}

fn add_into(acc: &mut Vec<u64>, more: &Value) {
    let more: Vec<u64> = serde_json::from_value(more.clone()).unwrap_or_default();
    if acc.len() < more.len() {
        acc.resize(more.len(), 0);
    }
    for (a, m) in acc.iter_mut().zip(more) {
        *a += m;
    }
}

fn totals(reports: &[Value]) -> Totals {
    let mut t = Totals::default();
    for r in reports {
        let classes: Vec<Vec<[u64; 4]>> = serde_json::from_value(r["classes"].clone()).unwrap_or_default();
        if t.classes.is_empty() {
            t.classes = classes.clone();
        } else {
            for (acc, c) in t.classes.iter_mut().zip(&classes) {
                for (a, row) in acc.iter_mut().zip(c) {
                    for k in 0..4 {
                        a[k] += row[k];
                    }
                }
            }
        }
        add_into(&mut t.hist_local, &r["hist_local"]);
        add_into(&mut t.hist_cross, &r["hist_cross"]);
        add_into(&mut t.by_node, &r["by_node"]);
        let u = |k: &str| r[k].as_u64().unwrap_or(0);
        t.up += u("up");
        if let Ok(c) = serde_json::from_value::<Counters>(r["counters"].clone()) {
            t.c.add(&c);
        }
        t.gen_cpu_s += r["cpu_s"].as_f64().unwrap_or(0.0);
    }
    t
}

impl Totals {
    fn deliveries(&self) -> u64 {
        self.classes.iter().flatten().map(|r| r[1]).sum()
    }

    /// Lost and duplicated deliveries per class, given the acked broadcasts per topic.
    fn losses(&self, acked: &[u64]) -> Value {
        let names = ["plain_stayed", "plain_moved", "recover_stayed", "recover_moved"];
        let mut out = serde_json::Map::new();
        for (c, name) in names.iter().enumerate() {
            let (mut sockets, mut expected, mut got, mut dups, mut up) = (0, 0, 0, 0, 0);
            for (t, row) in self.classes.get(c).into_iter().flatten().enumerate() {
                sockets += row[0];
                expected += row[0] * acked.get(t).copied().unwrap_or(0);
                got += row[1];
                dups += row[2];
                up += row[3];
            }
            out.insert(
                (*name).into(),
                json!({"sockets": sockets, "up": up, "expected": expected, "delivered": got,
                       "lost": expected.saturating_sub(got), "duplicates": dups}),
            );
        }
        Value::Object(out)
    }

    fn latency(&self) -> Value {
        json!({
            "local_n": self.hist_local.iter().sum::<u64>(),
            "local_p50_ms": hist_ms(&self.hist_local, 50.0),
            "local_p99_ms": hist_ms(&self.hist_local, 99.0),
            "cross_n": self.hist_cross.iter().sum::<u64>(),
            "cross_p50_ms": hist_ms(&self.hist_cross, 50.0),
            "cross_p99_ms": hist_ms(&self.hist_cross, 99.0),
        })
    }
}

async fn start_generators(args: &Args) -> Result<Vec<Generator>, AnyError> {
    let exe = std::env::current_exe()?;
    let mut gens = Vec::new();
    for i in 0..args.procs {
        let mut child = tokio::process::Command::new(&exe)
            .args(std::env::args().skip(1))
            .args(["--child", &format!("{i}/{}", args.procs)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        gens.push(Generator { _child: child, stdin, stdout });
    }
    Ok(gens)
}

// ---------------------------------------------------------------- parent: nodes

#[derive(Clone)]
struct Reading {
    at: Instant,
    cpu: Vec<f64>,
    rss: Vec<u64>,
    /// published + received at the broker, by node.
    broker_msgs: Vec<Option<u64>>,
    broker_cpu: f64,
    broker_rss: u64,
}

async fn read_nodes(args: &Args, alive: &[bool]) -> Reading {
    let mut broker_msgs = Vec::new();
    for (i, node) in args.nodes.iter().enumerate() {
        let stats = if alive[i] { broker_stats(*node, args.token.as_deref()).await } else { None };
        broker_msgs.push(stats.and_then(|s| Some(s["published"].as_u64()? + s["received"].as_u64()?)));
    }
    Reading {
        at: Instant::now(),
        cpu: args.pids.iter().map(|p| bench::cpu_seconds(*p)).collect(),
        rss: args.pids.iter().map(|p| bench::rss_bytes(*p)).collect(),
        broker_msgs,
        broker_cpu: args.broker_pids.iter().map(|p| bench::cpu_seconds(*p)).sum(),
        broker_rss: args.broker_pids.iter().map(|p| bench::rss_bytes(*p)).sum(),
    }
}

/// Node CPU seconds between two readings (a dead node: NaN, left out of sums).
fn cpu_delta(a: &Reading, b: &Reading) -> Vec<f64> {
    a.cpu.iter().zip(&b.cpu).map(|(x, y)| y - x).collect()
}

fn finite_sum(v: &[f64]) -> f64 {
    v.iter().filter(|x| x.is_finite()).sum()
}

fn broker_msgs_delta(a: &Reading, b: &Reading) -> u64 {
    a.broker_msgs.iter().zip(&b.broker_msgs).filter_map(|(x, y)| Some(y.as_ref()?.saturating_sub(*x.as_ref()?))).sum()
}

// ---------------------------------------------------------------- parent: watchers

/// Presences one node's watcher sees, by kind (`u`, `b`).
#[derive(Default)]
struct Seen {
    metas: HashMap<(String, String), i64>,
    users: usize,
    burst: usize,
    joined: usize,
    refused: usize,
}

impl Seen {
    fn change(&mut self, room: &str, key: &str, metas: i64) {
        let id = (room.to_owned(), key.to_owned());
        let was = self.metas.get(&id).copied().unwrap_or(0);
        let now = (was + metas).max(0);
        if now == 0 {
            self.metas.remove(&id);
        } else {
            self.metas.insert(id, now);
        }
        let delta: isize = match (was > 0, now > 0) {
            (false, true) => 1,
            (true, false) => -1,
            _ => return,
        };
        match key.as_bytes().first() {
            Some(b'u') => self.users = self.users.saturating_add_signed(delta),
            Some(b'b') => self.burst = self.burst.saturating_add_signed(delta),
            _ => {}
        }
    }

    fn apply(&mut self, room: &str, event: &str, payload: &str) {
        let Ok(v) = serde_json::from_str::<Value>(payload) else { return };
        let metas = |e: &Value| e["metas"].as_array().map_or(1, |m| m.len() as i64);
        match event {
            "presence_state" => {
                for (key, e) in v.as_object().into_iter().flatten() {
                    if !self.metas.contains_key(&(room.to_owned(), key.clone())) {
                        self.change(room, key, metas(e));
                    }
                }
            }
            "presence_diff" => {
                for (key, e) in v["joins"].as_object().into_iter().flatten() {
                    self.change(room, key, metas(e));
                }
                for (key, e) in v["leaves"].as_object().into_iter().flatten() {
                    self.change(room, key, -metas(e));
                }
            }
            "phx_reply" if payload.contains("\"status\":\"ok\"") => self.joined += 1,
            "phx_reply" => self.refused += 1,
            _ => {}
        }
    }
}

type Watchers = Vec<Arc<Mutex<Seen>>>;

fn seen(w: &Arc<Mutex<Seen>>) -> std::sync::MutexGuard<'_, Seen> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// One watcher per node, in every room (90 rooms per socket).
async fn start_watchers(args: &Args) -> Result<Watchers, AnyError> {
    let mut watchers = Vec::new();
    for (n, node) in args.nodes.iter().enumerate() {
        let w = Arc::new(Mutex::new(Seen::default()));
        let rooms: Vec<usize> = (0..args.rooms).collect();
        for (c, chunk) in rooms.chunks(PER_SOCKET_CHANNELS).enumerate() {
            let mut ws = connect(*node, n).await?;
            for room in chunk {
                let r = (room + 1).to_string();
                let params = format!("{{\"name\":\"w{n}_{c}\"}}");
                ws.send(frame(Some(&r), &r, &format!("room:scale-{room}"), "phx_join", &params)).await?;
            }
            let state = w.clone();
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let mut beat = tokio::time::interval(Duration::from_secs(25));
                beat.tick().await;
                loop {
                    tokio::select! {
                        msg = stream.next() => match msg {
                            Some(Ok(Message::Text(text))) => {
                                if let Ok((_, _, room, ev, p)) = serde_json::from_str::<Parsed>(text.as_str()) {
                                    if room != "phoenix" {
                                        seen(&state).apply(room, ev, p.get());
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        _ = beat.tick() => {
                            if sink.send(frame(None, "hb", "phoenix", "heartbeat", "{}")).await.is_err() { break; }
                        }
                    }
                }
            });
        }
        watchers.push(w);
    }
    let rooms = args.rooms;
    let ok = until(&watchers, &[], |s| s.joined + s.refused >= rooms, Duration::from_secs(30)).await;
    let refused: usize = watchers.iter().map(|w| seen(w).refused).sum();
    if ok.is_none() || refused > 0 {
        return Err(format!("watchers could not join every room ({refused} refused)").into());
    }
    Ok(watchers)
}

/// Waits until `done` holds for every watcher but those `skip` names; the
/// seconds it took, or None after `limit`.
async fn until(watchers: &Watchers, skip: &[usize], done: impl Fn(&Seen) -> bool, limit: Duration) -> Option<f64> {
    let start = Instant::now();
    loop {
        if watchers.iter().enumerate().filter(|(n, _)| !skip.contains(n)).all(|(_, w)| done(&seen(w))) {
            return Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- parent: publishers

struct Publishers {
    /// Shared with each one's heartbeat task (the server closes a connection
    /// silent for 60 s, and phases without publishing can last longer).
    sinks: Vec<Arc<tokio::sync::Mutex<futures_util::stream::SplitSink<Ws, Message>>>>,
    /// For topic t: (publisher index, next seq).
    route: Vec<(usize, u32)>,
    acked: Arc<Vec<AtomicU64>>,
    errors: Arc<AtomicU64>,
}

async fn start_publishers(args: &Args) -> Result<Publishers, AnyError> {
    let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); args.nodes.len()];
    for t in 0..args.topics {
        by_node[publisher_node(args, t)].push(t);
    }
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..args.topics).map(|_| AtomicU64::new(0)).collect());
    let errors = Arc::new(AtomicU64::new(0));
    let mut sinks = Vec::new();
    let mut route = vec![(0, 0); args.topics];
    for (n, topics) in by_node.iter().enumerate() {
        for chunk in topics.chunks(PER_SOCKET_CHANNELS) {
            let mut ws = connect(args.nodes[n], n).await?;
            for t in chunk {
                let r = format!("j{t}");
                ws.send(frame(Some(&r), &r, &format!("comments:{t}"), "phx_join", "{}")).await?;
            }
            let mut want = chunk.len();
            while want > 0 {
                let msg =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await?.ok_or("publisher closed")??;
                let Message::Text(text) = msg else { continue };
                if let Ok((_, Some(r), t, "phx_reply", p)) = serde_json::from_str::<Parsed>(text.as_str()) {
                    if r.starts_with('j') {
                        if !p.get().contains("\"status\":\"ok\"") {
                            return Err(format!("publisher join {t}: {}", p.get()).into());
                        }
                        want -= 1;
                    }
                }
            }
            for t in chunk {
                route[*t] = (sinks.len(), 0);
            }
            let (sink, mut stream) = ws.split();
            let (acked, errors) = (acked.clone(), errors.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok((_, Some(r), _, "phx_reply", p)) = serde_json::from_str::<Parsed>(text.as_str()) else {
                        continue;
                    };
                    // p{topic}_{seq}
                    let Some(t) = r.strip_prefix('p').and_then(|r| r.split('_').next()?.parse::<usize>().ok()) else {
                        continue;
                    };
                    if p.get().contains("\"status\":\"ok\"") {
                        acked[t].fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            let sink = Arc::new(tokio::sync::Mutex::new(sink));
            let beating = Arc::downgrade(&sink);
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(Duration::from_secs(25));
                beat.tick().await;
                loop {
                    beat.tick().await;
                    let Some(sink) = beating.upgrade() else { break };
                    if sink.lock().await.send(frame(None, "hb", "phoenix", "heartbeat", "{}")).await.is_err() {
                        break;
                    }
                }
            });
            sinks.push(sink);
        }
    }
    Ok(Publishers { sinks, route, acked, errors })
}

impl Publishers {
    fn acked(&self) -> Vec<u64> {
        self.acked.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }

    /// Starts a window: sequence numbers and acks from 0.
    fn reset(&mut self) {
        for r in &mut self.route {
            r.1 = 0;
        }
        for a in self.acked.iter() {
            a.store(0, Ordering::Relaxed);
        }
        self.errors.store(0, Ordering::Relaxed);
    }

    /// Pushes `rate` per second round-robin over the topics for `secs`;
    /// calls `at(elapsed)` every 250 ms. Returns the pushes sent.
    async fn run(&mut self, args: &Args, rate: f64, secs: f64, mut at: impl FnMut(f64)) -> u64 {
        let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let start = Instant::now();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0u64;
        let mut next_check = Duration::ZERO;
        while start.elapsed().as_secs_f64() < secs {
            ticks.tick().await;
            let t = (sent as usize) % args.topics;
            let (p, seq) = self.route[t];
            self.route[t].1 += 1;
            let node = publisher_node(args, t);
            let payload = format!("{{\"content\":\"{seq}/{node}/{}\"}}", unix_us());
            let _ = self.sinks[p]
                .lock()
                .await
                .send(frame(
                    Some(&format!("j{t}")),
                    &format!("p{t}_{seq}"),
                    &format!("comments:{t}"),
                    "comment:add",
                    &payload,
                ))
                .await;
            sent += 1;
            if start.elapsed() >= next_check {
                at(start.elapsed().as_secs_f64());
                next_check += Duration::from_millis(250);
            }
        }
        sent
    }
}

// ---------------------------------------------------------------- parent

fn per_node_json(args: &Args, f: impl Fn(usize) -> Value) -> Value {
    json!((0..args.nodes.len()).map(f).collect::<Vec<_>>())
}

async fn quiet(gens: &mut [Generator], secs: f64) -> Result<Totals, AnyError> {
    // Until the deliveries stop growing (or `secs`).
    let start = Instant::now();
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = totals(&ask_all(gens, "stats").await?);
        let d = t.deliveries();
        if d == last || start.elapsed().as_secs_f64() > secs {
            return Ok(t);
        }
        last = d;
    }
}

async fn parent_main(args: Arc<Args>) -> Result<(), AnyError> {
    let n = args.nodes.len();
    let mut alive = vec![true; n];
    let print = |v: Value| {
        println!("{v}");
    };
    let base = json!({"server": args.label, "nodes": n, "sockets": args.sockets, "topics": args.topics,
                      "rooms": args.rooms, "procs": args.procs});
    let with = |mut v: Value| {
        if let (Some(o), Value::Object(b)) = (v.as_object_mut(), base.clone()) {
            o.extend(b);
            o.insert("loadavg".into(), json!(loadavg()));
        }
        v
    };
    let watchers = if args.rooms > 0 { start_watchers(&args).await? } else { Vec::new() };

    // ---- join
    let r0 = read_nodes(&args, &alive).await;
    let start = Instant::now();
    let mut gens = start_generators(&args).await?;
    let mut joined = 0u64;
    let mut reports = Vec::new();
    for g in &mut gens {
        let v = g.read().await?;
        joined += v["joined"].as_u64().unwrap_or(0);
        reports.push(v["report"].clone());
    }
    let join_wall = start.elapsed().as_secs_f64();
    let r1 = read_nodes(&args, &alive).await;
    let want = args.sockets;
    let presence_s = if args.rooms > 0 {
        until(&watchers, &[], |s| s.users >= want, Duration::from_secs(120)).await.map(|s| s + join_wall)
    } else {
        None
    };
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let r2 = read_nodes(&args, &alive).await;
    let t = totals(&reports);
    let cpu = cpu_delta(&r0, &r1);
    let on_node = |i: usize| (0..args.sockets).filter(|s| s % n == i).count() as f64;
    print(with(json!({
        "phase": "join",
        "joined": joined,
        "failed": t.c.join_failed,
        "first_error": t.c.first_error,
        "wall_s": round(join_wall, 3),
        "connect_join_per_s": round(joined as f64 / join_wall, 1),
        "channels_per_socket": if args.rooms > 0 { 2 } else { 1 },
        "presence_seen_everywhere_s": presence_s.map(|s| round(s, 3)),
        "presences_seen_by_node": watchers.iter().map(|w| seen(w).users).collect::<Vec<_>>(),
        "cpu_us_per_connect_join": round(finite_sum(&cpu) * 1e6 / joined.max(1) as f64, 1),
        "bytes_per_socket": round((r2.rss.iter().sum::<u64>() as f64 - r0.rss.iter().sum::<u64>() as f64) / joined.max(1) as f64, 0),
        "per_node": per_node_json(&args, |i| json!({
            "node": i,
            "sockets": on_node(i),
            "cpu_s": round(cpu[i], 3),
            "rss_before": r0.rss[i],
            "rss_settled": r2.rss[i],
            "bytes_per_socket": round((r2.rss[i] as f64 - r0.rss[i] as f64) / on_node(i).max(1.0), 0),
        })),
        "broker_cpu_s": round(r1.broker_cpu - r0.broker_cpu, 3),
        "broker_rss_before": r0.broker_rss,
        "broker_rss_settled": r2.broker_rss,
        "broker_msgs": broker_msgs_delta(&r0, &r1),
        "gen_cpu_s": round(t.gen_cpu_s, 3),
    })));
    if joined < args.sockets as u64 {
        return Err(format!(
            "{} of {} sockets did not join: {}",
            args.sockets as u64 - joined,
            args.sockets,
            t.c.first_error
        )
        .into());
    }

    // ---- deliveries
    let mut pubs = start_publishers(&args).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ask_all(&mut gens, "reset").await?;
    pubs.reset();
    let gen0 = totals(&ask_all(&mut gens, "stats").await?).gen_cpu_s;
    let r0 = read_nodes(&args, &alive).await;
    let sent = pubs.run(&args, args.rate, args.duration, |_| {}).await;
    let t = quiet(&mut gens, 10.0).await?;
    let r1 = read_nodes(&args, &alive).await;
    let acked = pubs.acked();
    let acked_sum: u64 = acked.iter().sum();
    let cpu = cpu_delta(&r0, &r1);
    let wall = r1.at.duration_since(r0.at).as_secs_f64();
    let deliveries = t.deliveries();
    let losses = t.losses(&acked);
    print(with(json!({
        "phase": "deliveries",
        "rate": args.rate,
        "duration_s": args.duration,
        "pushed": sent,
        "acked": acked_sum,
        "push_errors": pubs.errors.load(Ordering::Relaxed),
        "deliveries": deliveries,
        "fanout_per_broadcast": round(deliveries as f64 / acked_sum.max(1) as f64, 2),
        "lost": losses.as_object().map(|o| o.values().map(|c| c["lost"].as_u64().unwrap_or(0)).sum::<u64>()),
        "latency": t.latency(),
        "node_cpu_s": round(finite_sum(&cpu), 3),
        "cpu_us_per_delivery": round(finite_sum(&cpu) * 1e6 / deliveries.max(1) as f64, 2),
        "cpu_us_per_broadcast_all_nodes": round(finite_sum(&cpu) * 1e6 / acked_sum.max(1) as f64, 1),
        "broker_cpu_s": round(r1.broker_cpu - r0.broker_cpu, 3),
        "broker_cpu_us_per_broadcast": round((r1.broker_cpu - r0.broker_cpu) * 1e6 / acked_sum.max(1) as f64, 1),
        "broker_msgs_per_broadcast": round(broker_msgs_delta(&r0, &r1) as f64 / acked_sum.max(1) as f64, 2),
        "per_node": per_node_json(&args, |i| json!({
            "node": i,
            "cpu_s": round(cpu[i], 3),
            "cpu_util": round(cpu[i] / wall, 3),
            "deliveries": t.by_node.get(i).copied().unwrap_or(0),
            "cpu_us_per_delivery": round(cpu[i] * 1e6 / t.by_node.get(i).copied().unwrap_or(0).max(1) as f64, 2),
        })),
        "gen_cpu_s": round(t.gen_cpu_s - gen0, 3),
    })));

    // ---- presence burst
    if args.rooms > 0 && args.burst > 0 {
        let r0 = read_nodes(&args, &alive).await;
        let start = Instant::now();
        let from = args.sockets + 1_000_000;
        let cmd = format!("burst {from} {}", from + args.burst);
        let want = args.burst;
        let (answers, seen_s) = tokio::join!(
            ask_all(&mut gens, &cmd),
            until(&watchers, &[], move |s| s.burst >= want, Duration::from_secs(120))
        );
        let burst_joined: u64 = answers?.iter().map(|v| v["burst_joined"].as_u64().unwrap_or(0)).sum();
        let acked_s = start.elapsed().as_secs_f64();
        let r1 = read_nodes(&args, &alive).await;
        let cpu = cpu_delta(&r0, &r1);
        print(with(json!({
            "phase": "presence",
            "burst": args.burst,
            "burst_joined": burst_joined,
            "room_size_after": (args.sockets + args.burst) / args.rooms,
            "all_joins_acked_s": round(acked_s, 3),
            "all_nodes_see_all_s": seen_s.map(|s| round(s, 3)),
            "burst_seen_by_node": watchers.iter().map(|w| seen(w).burst).collect::<Vec<_>>(),
            "node_cpu_s": round(finite_sum(&cpu), 3),
            "cpu_us_per_presence_join": round(finite_sum(&cpu) * 1e6 / burst_joined.max(1) as f64, 1),
            "broker_cpu_s": round(r1.broker_cpu - r0.broker_cpu, 3),
            "broker_msgs": broker_msgs_delta(&r0, &r1),
        })));
    }

    // ---- failover
    if let Some(kill) = args.kill {
        ask_all(&mut gens, "reset").await?;
        pubs.reset();
        let before = totals(&ask_all(&mut gens, "stats").await?);
        let r0 = read_nodes(&args, &alive).await;
        let kill_at = args.fail_duration / 3.0;
        let mut killed_us = 0u64;
        let mut samples: Vec<(Instant, Vec<f64>, f64)> = Vec::new();
        let pids = args.pids.clone();
        let broker_pids = args.broker_pids.clone();
        let sent = pubs
            .run(&args, args.rate, args.fail_duration, |elapsed| {
                if killed_us == 0 && elapsed >= kill_at {
                    // SAFETY: kill(2) with a pid we were given.
                    unsafe { libc::kill(pids[kill] as i32, libc::SIGKILL) };
                    killed_us = unix_us();
                }
                let cpu: Vec<f64> = pids.iter().map(|p| bench::cpu_seconds(*p)).collect();
                let b: f64 = broker_pids.iter().map(|p| bench::cpu_seconds(*p)).sum();
                samples.push((Instant::now(), cpu, b));
            })
            .await;
        alive[kill] = false;
        // Every socket back (or --back-timeout), then quiet.
        let wait = Instant::now();
        let total_sockets = args.sockets as u64 + if args.rooms > 0 { args.burst as u64 } else { 0 };
        let mut t = totals(&ask_all(&mut gens, "stats").await?);
        while t.up < total_sockets && wait.elapsed() < Duration::from_secs_f64(args.back_timeout) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            t = totals(&ask_all(&mut gens, "stats").await?);
        }
        let t = if t.up >= total_sockets { quiet(&mut gens, 15.0).await? } else { t };
        let r1 = read_nodes(&args, &alive).await;
        let acked = pubs.acked();
        let acked_sum: u64 = acked.iter().sum();
        // Peak CPU over 250 ms windows: nodes (each, and all) and broker.
        let (mut peak_node, mut peak_all, mut peak_broker) = (0.0f64, 0.0f64, 0.0f64);
        for w in samples.windows(2) {
            let dt = w[1].0.duration_since(w[0].0).as_secs_f64().max(1e-3);
            let per: Vec<f64> = w[0].1.iter().zip(&w[1].1).map(|(a, b)| (b - a) / dt).collect();
            peak_node = per.iter().filter(|x| x.is_finite()).fold(peak_node, |m, x| m.max(*x));
            peak_all = peak_all.max(finite_sum(&per));
            peak_broker = peak_broker.max((w[1].2 - w[0].2) / dt);
        }
        let on_killed = (0..args.sockets).filter(|s| s % n == kill).count();
        let cpu = cpu_delta(&r0, &r1);
        let losses = t.losses(&acked);
        print(with(json!({
            "phase": "failover",
            "killed_node": kill,
            "sockets_on_killed_node": on_killed,
            "rate": args.rate,
            "duration_s": args.fail_duration,
            "pushed": sent,
            "acked": acked_sum,
            "push_errors": pubs.errors.load(Ordering::Relaxed),
            "down_events": t.c.down_events - before.c.down_events,
            "back_events": t.c.back_events - before.c.back_events,
            "up": t.up,
            "expected_up": total_sockets,
            "all_back_s": (t.up >= total_sockets && killed_us > 0).then(|| round(t.c.last_back_us.saturating_sub(killed_us) as f64 / 1e6, 3)),
            "recovered": t.c.recovered,
            "recovered_missed": t.c.missed,
            "not_recovered": t.c.not_recovered,
            "resyncs": t.c.resyncs,
            "losses": losses,
            "peak_node_cpu_util": round(peak_node, 3),
            "peak_all_nodes_cpu_util": round(peak_all, 3),
            "peak_broker_cpu_util": round(peak_broker, 3),
            "node_cpu_s": round(finite_sum(&cpu), 3),
            "broker_cpu_s": round(r1.broker_cpu - r0.broker_cpu, 3),
            "gen_cpu_s": round(t.gen_cpu_s - before.gen_cpu_s, 3),
        })));
        if t.up < total_sockets {
            return Err(format!(
                "{} of {total_sockets} sockets did not come back after the kill",
                total_sockets - t.up
            )
            .into());
        }
        if args.strict {
            for class in ["recover_stayed", "recover_moved"] {
                let (lost, dups) = (&losses[class]["lost"], &losses[class]["duplicates"]);
                if lost.as_u64() != Some(0) || dups.as_u64() != Some(0) {
                    return Err(format!("{class}: {lost} broadcasts lost and {dups} duplicated with history").into());
                }
            }
        }
    }
    drop(gens);
    Ok(())
}

fn main() {
    raise_nofile();
    let args = Arc::new(parse_args());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Some((i, k)) = args.child {
        rt.block_on(child_main(args.clone(), i, k));
        rt.shutdown_timeout(Duration::from_millis(100));
        return;
    }
    let result = rt.block_on(parent_main(args.clone()));
    rt.shutdown_timeout(Duration::from_millis(100));
    if let Err(e) = result {
        eprintln!("cluster: {e}");
        std::process::exit(1);
    }
}
