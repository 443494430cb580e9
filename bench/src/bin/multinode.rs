//! `multinode`: drives several `discuss` nodes that share one broker and
//! prints one JSON line per scenario, with each node's broker counters
//! (`GET /api/stats`) and CPU time (`/proc/PID/stat`) over the window.
//!
//! ```text
//! multinode --scenario routing|burst|presence --nodes IP:PORT,IP:PORT,.. --pids PID,PID,..
//!           [--label NAME] [--token ADMIN_TOKEN] [--redis IP:PORT] [--broker-pids PID,..]
//!   routing:  [--subscribers 50] [--topics 10] [--rate 500] [--duration 10] [--idle-nodes 0]
//!   burst:    [--subscribers 100] [--messages 20000] [--window 100] [--stall-broker-ms 0]
//!   presence: [--users 1000,10000] [--rooms 100] [--burst 1000] [--steady 10] [--kill 2]
//! ```
//!
//! `routing`: node i has `--subscribers` sockets on its own topics
//! `comments:{1000(i+1)+k}` (k < `--topics`; the contract wants digits), and
//! one pusher per topic sends `comment:add` there, `--rate` per node in all,
//! for `--duration` s (nodes below `--idle-nodes` push nothing: their
//! cost is then the other nodes' traffic alone). Per node: broker messages received and published,
//! CPU seconds, deliveries missing. With `--redis`, an observer
//! (`PSUBSCRIBE *`) counts every message on the broker by the topic it
//! carries, for a node (the old code) that has no `/api/stats`.
//!
//! `burst`: `--subscribers` sockets on node B (the second) on one topic;
//! one client on node A (the first) pushes `--messages` `comment:add`
//! there with `--window` in flight, and counts `ok` and `error` replies;
//! then waits for quiet and counts what B's subscribers got. With
//! `--stall-broker-ms`, the broker's processes are stopped (SIGSTOP) that
//! long once a tenth of the pushes are acked: the broker stays up (its
//! connections open) but takes nothing, so publishes back up.
//!
//! `presence`: users join `room:bench-{u mod rooms}` on node `u mod nodes`
//! with a unique name; two watcher sockets per node join every room and
//! follow presence_state/presence_diff. Steady-state broker messages per
//! second per node at each `--users` size; the time for every node's
//! watchers to see a burst of `--burst` joins; then SIGKILL node `--kill`
//! and the time until the other nodes' watchers see its presences leave.
//!
//! The generator runs on a current-thread runtime, to leave the cores to
//! the nodes; client sockets are bound to 127.0.0.2..=127.0.0.255 in turn.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::client::{broker_stats, connect_node, frame, AnyError, Parsed, Ws};
use bench::{loadavg, raise_nofile, round};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Stream = SplitStream<Ws>;

#[derive(Clone, Debug)]
struct Args {
    scenario: String,
    label: String,
    nodes: Vec<SocketAddr>,
    pids: Vec<u32>,
    token: Option<String>,
    redis: Option<SocketAddr>,
    subscribers: Option<usize>,
    topics: usize,
    rate: f64,
    duration: f64,
    messages: usize,
    window: usize,
    users: Vec<usize>,
    rooms: usize,
    burst: usize,
    steady: f64,
    kill: Option<usize>,
    concurrency: usize,
    /// The broker's processes, for their CPU time.
    broker_pids: Vec<u32>,
    /// Routing: nodes 0..idle_nodes push nothing (their subscribers only wait).
    idle_nodes: usize,
    /// Burst: stop the broker's processes (SIGSTOP) for this long once a
    /// tenth of the pushes are acked, so publishes back up while it is up.
    stall_ms: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: multinode --scenario routing|burst|presence --nodes IP:PORT,.. --pids PID,.. \
         [--label NAME] [--token T] [--redis IP:PORT] [--subscribers N] [--topics T] [--rate R] \
         [--duration S] [--messages M] [--window W] [--users N,N] [--rooms R] [--burst B] \
         [--steady S] [--kill I] [--concurrency C]"
    );
    std::process::exit(2)
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',').filter(|s| !s.is_empty()).map(|s| s.trim().parse().unwrap_or_else(|_| usage())).collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        scenario: String::new(),
        label: "discuss".into(),
        nodes: Vec::new(),
        pids: Vec::new(),
        token: None,
        redis: None,
        subscribers: None,
        topics: 10,
        rate: 500.0,
        duration: 10.0,
        messages: 20_000,
        window: 100,
        users: vec![1000, 10_000],
        rooms: 100,
        burst: 1000,
        steady: 10.0,
        kill: None,
        concurrency: 64,
        broker_pids: Vec::new(),
        idle_nodes: 0,
        stall_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| v.parse::<f64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--scenario" => a.scenario = val(),
            "--label" => a.label = val(),
            "--nodes" => a.nodes = list(&val()),
            "--pids" => a.pids = list(&val()),
            "--token" => a.token = Some(val()).filter(|t| !t.is_empty()),
            "--redis" => a.redis = Some(val().parse().unwrap_or_else(|_| usage())),
            "--subscribers" => a.subscribers = Some(num(val()) as usize),
            "--topics" => a.topics = num(val()) as usize,
            "--rate" => a.rate = num(val()),
            "--duration" => a.duration = num(val()),
            "--messages" => a.messages = num(val()) as usize,
            "--window" => a.window = num(val()) as usize,
            "--users" => a.users = list(&val()),
            "--rooms" => a.rooms = num(val()) as usize,
            "--burst" => a.burst = num(val()) as usize,
            "--steady" => a.steady = num(val()),
            "--kill" => a.kill = Some(num(val()) as usize),
            "--concurrency" => a.concurrency = num(val()) as usize,
            "--broker-pids" => a.broker_pids = list(&val()),
            "--idle-nodes" => a.idle_nodes = num(val()) as usize,
            "--stall-broker-ms" => a.stall_ms = num(val()) as u64,
            _ => usage(),
        }
    }
    if a.scenario.is_empty() || a.nodes.is_empty() || a.nodes.len() != a.pids.len() {
        usage();
    }
    a.topics = a.topics.max(1);
    a.rooms = a.rooms.max(1);
    a.window = a.window.max(1);
    a.concurrency = a.concurrency.max(1);
    a
}

// ---------------------------------------------------------------- sockets

static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// Connects to a node from the next source address 127.0.0.(2 + i mod 254).
async fn connect(node: SocketAddr) -> Result<Ws, AnyError> {
    connect_node(node, NEXT_SOURCE.fetch_add(1, Ordering::Relaxed)).await
}

/// How a reply went: `ok`, or the error's reason.
fn reply_outcome(payload: &str) -> String {
    if payload.contains("\"status\":\"ok\"") {
        return "ok".into();
    }
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    v["response"]["reason"].as_str().map_or_else(|| format!("error {}", v["response"]), str::to_owned)
}

/// Reads frames until the reply to `msg_ref`; Ok when its status is ok.
async fn await_reply(ws: &mut Ws, msg_ref: &str) -> Result<(), AnyError> {
    while let Some(msg) = ws.next().await {
        if let Message::Text(text) = msg? {
            let Ok((_, r, _, event, payload)) = serde_json::from_str::<Parsed>(text.as_str()) else { continue };
            if event == "phx_reply" && r == Some(msg_ref) {
                let outcome = reply_outcome(payload.get());
                return if outcome == "ok" { Ok(()) } else { Err(outcome.into()) };
            }
        }
    }
    Err("connection closed before the reply".into())
}

/// Joins `topic` (join_ref = msg_ref = `join_ref`) on an open socket.
async fn join(ws: &mut Ws, topic: &str, join_ref: &str, params: &str) -> Result<(), AnyError> {
    ws.send(frame(Some(join_ref), join_ref, topic, "phx_join", params)).await?;
    await_reply(ws, join_ref).await.map_err(|e| format!("join {topic}: {e}").into())
}

async fn connect_join(node: SocketAddr, topic: &str, params: &str) -> Result<Ws, AnyError> {
    let mut ws = connect(node).await?;
    join(&mut ws, topic, "1", params).await?;
    Ok(ws)
}

/// Connects and joins many sockets, `concurrency` at a time; each item is
/// (node, topic, join params). Fails on the first socket that fails.
async fn join_all(items: Vec<(SocketAddr, String, String)>, concurrency: usize) -> Result<Vec<Ws>, AnyError> {
    let results: Vec<Result<Ws, AnyError>> = futures_util::stream::iter(items)
        .map(|(node, topic, params)| async move { connect_join(node, &topic, &params).await })
        .buffered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Reads a socket until it closes, heartbeating every 20 s (the server
/// closes a connection silent for 60 s); calls `on_text` for every text frame.
fn drain(ws: Ws, mut on_text: impl FnMut(&str) + Send + 'static) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let mut beat = tokio::time::interval(Duration::from_secs(20));
        beat.tick().await;
        let mut n = 0u64;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => on_text(text.as_str()),
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = beat.tick() => {
                    n += 1;
                    if sink.send(frame(None, &format!("hb{n}"), "phoenix", "heartbeat", "{}")).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Counts the frames of `event` a socket gets.
fn count_event(ws: Ws, event: Arc<str>, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    drain(ws, move |text| {
        if let Ok((_, _, _, ev, _)) = serde_json::from_str::<Parsed>(text) {
            if ev == &*event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

// ---------------------------------------------------------------- node figures

/// One reading of every node: CPU seconds and broker counters.
#[derive(Clone)]
struct Reading {
    at: Instant,
    cpu: Vec<f64>,
    stats: Vec<Option<Value>>,
    broker_cpu: f64,
}

async fn read_nodes(args: &Args) -> Reading {
    let mut stats = Vec::new();
    for node in &args.nodes {
        stats.push(broker_stats(*node, args.token.as_deref()).await);
    }
    Reading {
        at: Instant::now(),
        cpu: args.pids.iter().map(|p| bench::cpu_seconds(*p)).collect(),
        stats,
        broker_cpu: args.broker_pids.iter().map(|p| bench::cpu_seconds(*p)).sum(),
    }
}

fn counter(stats: &Option<Value>, field: &str) -> Option<u64> {
    stats.as_ref().and_then(|s| s[field].as_u64())
}

/// Per-node deltas between two readings.
fn node_deltas(args: &Args, a: &Reading, b: &Reading) -> Vec<Value> {
    let wall = b.at.duration_since(a.at).as_secs_f64();
    (0..args.nodes.len())
        .map(|i| {
            let delta = |f: &str| match (counter(&a.stats[i], f), counter(&b.stats[i], f)) {
                (Some(x), Some(y)) => json!(y.saturating_sub(x)),
                _ => Value::Null,
            };
            let cpu = b.cpu[i] - a.cpu[i];
            json!({
                "node": i,
                "received": delta("received"),
                "published": delta("published"),
                "refused": delta("refused"),
                "dropped": delta("dropped"),
                "reconnects": delta("reconnects"),
                "subscriptions": counter(&b.stats[i], "subscriptions"),
                "cpu_s": round(cpu, 3),
                "cpu_util": round(cpu / wall.max(1e-9), 3),
            })
        })
        .collect()
}

fn gen_cpu() -> f64 {
    bench::cpu_seconds(std::process::id())
}

// ---------------------------------------------------------------- broker observer

/// What an observer on the broker (`PSUBSCRIBE *` on Redis) saw, by the
/// topic inside each message (the envelope carries it in the clear, in
/// the old and the new format alike).
#[derive(Default, Clone, Debug)]
struct Observed {
    /// Messages carrying `comments:N`, by N.
    topics: HashMap<u64, u64>,
    /// Presence gossip (`phx_presence:..`).
    gossip: u64,
    other: u64,
    /// Messages by broker channel.
    channels: HashMap<String, u64>,
}

fn classify(observed: &mut Observed, channel: &[u8], payload: &[u8]) {
    *observed.channels.entry(String::from_utf8_lossy(channel).into_owned()).or_default() += 1;
    let find = |needle: &[u8]| payload.windows(needle.len()).position(|w| w == needle);
    if let Some(at) = find(b"comments:") {
        let digits: Vec<u8> = payload[at + 9..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        if let Ok(n) = std::str::from_utf8(&digits).unwrap_or_default().parse::<u64>() {
            *observed.topics.entry(n).or_default() += 1;
            return;
        }
    }
    if find(b"phx_presence").is_some() {
        observed.gossip += 1;
    } else {
        observed.other += 1;
    }
}

/// Parses one RESP value at the start of `buf`: Some((value, length)).
/// Arrays become `Resp::Array`, bulk and simple strings `Resp::Bytes`.
enum Resp {
    Bytes(Vec<u8>),
    Int,
    Array(Vec<Resp>),
}

fn parse_resp(buf: &[u8]) -> Option<(Resp, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..line_end]).ok()?;
    let rest = line_end + 2;
    match buf.first()? {
        b'+' | b'-' => Some((Resp::Bytes(line.as_bytes().to_vec()), rest)),
        b':' => Some((Resp::Int, rest)),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some((Resp::Bytes(Vec::new()), rest));
            }
            let n = n as usize;
            if buf.len() < rest + n + 2 {
                return None;
            }
            Some((Resp::Bytes(buf[rest..rest + n].to_vec()), rest + n + 2))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut items = Vec::new();
            let mut at = rest;
            for _ in 0..n.max(0) {
                let (item, len) = parse_resp(&buf[at..])?;
                items.push(item);
                at += len;
            }
            Some((Resp::Array(items), at))
        }
        _ => None,
    }
}

/// Subscribes to every channel of a Redis server and counts what passes.
async fn observe(redis: SocketAddr) -> Result<Arc<Mutex<Observed>>, AnyError> {
    let mut tcp = TcpStream::connect(redis).await?;
    tcp.write_all(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$1\r\n*\r\n").await?;
    let observed = Arc::new(Mutex::new(Observed::default()));
    let seen = observed.clone();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut chunk = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = tcp.read(&mut chunk).await {
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            while let Some((value, len)) = parse_resp(&buf[used..]) {
                used += len;
                if let Resp::Array(items) = value {
                    // ["pmessage", pattern, channel, payload]
                    if let [Resp::Bytes(kind), _, Resp::Bytes(channel), Resp::Bytes(payload)] = &items[..] {
                        if kind == b"pmessage" {
                            classify(&mut seen.lock().unwrap_or_else(|e| e.into_inner()), channel, payload);
                        }
                    }
                }
            }
            buf.drain(..used);
        }
    });
    // Let the subscription take.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(observed)
}

/// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
async fn numsub(redis: SocketAddr, channel: &str) -> Option<i64> {
    let mut tcp = TcpStream::connect(redis).await.ok()?;
    let cmd = format!("*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n", channel.len());
    tcp.write_all(cmd.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf)).await.ok()?.ok()?;
    // *2 $len channel :N
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().find_map(|l| l.strip_prefix(':')).and_then(|n| n.trim().parse().ok())
}

fn observed_delta(a: &Observed, b: &Observed) -> Observed {
    let mut d = Observed { gossip: b.gossip - a.gossip, other: b.other - a.other, ..Observed::default() };
    for (k, v) in &b.topics {
        d.topics.insert(*k, v - a.topics.get(k).copied().unwrap_or(0));
    }
    for (k, v) in &b.channels {
        d.channels.insert(k.clone(), v - a.channels.get(k).copied().unwrap_or(0));
    }
    d
}

// ---------------------------------------------------------------- routing

fn routing_topic(node: usize, k: usize) -> u64 {
    1000 * (node as u64 + 1) + k as u64
}

/// Counts of a pusher's replies: ok, and errors by reason.
#[derive(Default)]
struct Replies {
    ok: AtomicU64,
    errors: Mutex<HashMap<String, u64>>,
}

impl Replies {
    fn add(&self, outcome: String) {
        if outcome == "ok" {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(outcome).or_default() += 1;
        }
    }

    fn errors(&self) -> Value {
        json!(self.errors.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn error_count(&self) -> u64 {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }
}

/// Reads a pusher's frames: every `phx_reply` to a ref other than the join's
/// is counted in `replies` (and calls `on_reply`).
fn read_replies(mut stream: Stream, replies: Arc<Replies>, on_reply: impl Fn() + Send + 'static) {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok((_, r, _, event, payload)) = serde_json::from_str::<Parsed>(text.as_str()) else { continue };
            if event == "phx_reply" && r.is_some_and(|r| r.starts_with('p')) {
                replies.add(reply_outcome(payload.get()));
                on_reply();
            }
        }
    });
}

async fn routing(args: Arc<Args>) -> Result<Value, AnyError> {
    let nodes = args.nodes.len();
    let subs = args.subscribers.unwrap_or(50);
    let topics = args.topics;
    let observer = match args.redis {
        Some(r) => Some(observe(r).await?),
        None => None,
    };
    // Subscribers: node i, socket s on topic k = s mod topics.
    let delivered: Vec<Arc<AtomicU64>> = (0..nodes).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut per_topic = vec![vec![0u64; topics]; nodes];
    let mut items = Vec::new();
    let mut owner = Vec::new();
    for (i, node) in args.nodes.iter().enumerate() {
        for s in 0..subs {
            let k = s % topics;
            per_topic[i][k] += 1;
            items.push((*node, format!("comments:{}", routing_topic(i, k)), "{}".to_owned()));
            owner.push((i, k));
        }
    }
    let sockets = join_all(items, args.concurrency).await?;
    for (ws, (i, k)) in sockets.into_iter().zip(owner) {
        let event: Arc<str> = format!("comments:{}:new", routing_topic(i, k)).into();
        count_event(ws, event, delivered[i].clone());
    }
    // Pushers: one per topic (under the per-connection broadcast limit at
    // the default rate), joined before the window.
    let mut pushers = Vec::new();
    let replies: Vec<Arc<Replies>> = (0..nodes).map(|_| Arc::new(Replies::default())).collect();
    for (i, node) in args.nodes.iter().enumerate() {
        for k in 0..topics {
            let topic = format!("comments:{}", routing_topic(i, k));
            let ws = connect_join(*node, &topic, "{}").await?;
            let (sink, stream) = ws.split();
            read_replies(stream, replies[i].clone(), || {});
            pushers.push((i, topic, sink));
        }
    }
    // Idle first: what a node costs with nothing but presence heartbeats.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_start = read_nodes(&args).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_end = read_nodes(&args).await;

    let seen_before = observer.as_ref().map(|o| o.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let before = read_nodes(&args).await;
    let gen_before = gen_cpu();
    let delivered_before: Vec<u64> = delivered.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    let start = Instant::now();
    let period = Duration::from_secs_f64(topics as f64 / args.rate.max(1.0));
    let stop = tokio::time::Instant::from_std(start + Duration::from_secs_f64(args.duration));
    let sent: Vec<Arc<AtomicU64>> = (0..nodes).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut tasks = Vec::new();
    let mut sinks_idle = Vec::new();
    for (n, (i, topic, mut sink)) in pushers.into_iter().enumerate() {
        if i < args.idle_nodes {
            sinks_idle.push(sink);
            continue;
        }
        let sent = sent[i].clone();
        let offset = period.mul_f64((n % topics) as f64 / topics as f64);
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::from_std(start) + offset, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq = 0u64;
            loop {
                ticks.tick().await;
                if tokio::time::Instant::now() >= stop {
                    break;
                }
                seq += 1;
                let payload = format!("{{\"content\":\"{seq}\"}}");
                if sink.send(frame(Some("1"), &format!("p{seq}"), &topic, "comment:add", &payload)).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            sink
        }));
    }
    let mut sinks = sinks_idle;
    for t in tasks {
        sinks.push(t.await?);
    }
    // Let the last broadcasts arrive (replies and deliveries).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = read_nodes(&args).await;
    let gen = gen_cpu() - gen_before;
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let seen_after = observer.as_ref().map(|o| o.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let observed = seen_before.zip(seen_after).map(|(a, b)| observed_delta(&a, &b));
    let shared_channel_subs = match args.redis {
        Some(r) => numsub(r, "channels:pubsub").await,
        None => None,
    };
    let gossip_channel_subs = match args.redis {
        Some(r) => {
            let mut subs = json!({});
            // The old code's one channel; the new code's gossip channel and
            // node 0's first topic.
            let topic0 = format!("channels:t:comments:{}", routing_topic(0, 0));
            for ch in ["channels:pubsub", "channels:t:phx_presence:gossip", topic0.as_str()] {
                subs[ch] = json!(numsub(r, ch).await);
            }
            subs
        }
        None => Value::Null,
    };
    let idle = node_deltas(&args, &idle_start, &idle_end);
    let mut per_node = node_deltas(&args, &before, &after);
    for (i, node) in per_node.iter_mut().enumerate() {
        let acked = replies[i].ok.load(Ordering::Relaxed);
        let subs_per_topic = subs as u64 / topics as u64;
        let got = delivered[i].load(Ordering::Relaxed) - delivered_before[i];
        let cpu = node["cpu_s"].as_f64().unwrap_or(0.0);
        let mut extra = json!({
            "pushed": sent[i].load(Ordering::Relaxed),
            "acked": acked,
            "errors": replies[i].errors(),
            "delivered": got,
            "missing": (acked * subs_per_topic).saturating_sub(got),
            "cpu_us_per_push": round(cpu * 1e6 / acked.max(1) as f64, 1),
            "idle_cpu_util": idle[i]["cpu_util"],
            "idle_received_per_s": idle[i]["received"].as_u64().map(|r| round(r as f64 / 3.0, 1)),
        });
        if let Some(o) = &observed {
            // What Redis sends this node's subscriber connection, from what
            // the observer saw and who subscribes (PUBSUB NUMSUB): on the
            // old code every node subscribes to the one shared channel and
            // gets every message (its own too); on the new one a node gets
            // its own topics (its own publishes, echoed) and the gossip.
            let own: u64 = (0..topics).map(|k| o.topics.get(&routing_topic(i, k)).copied().unwrap_or(0)).sum();
            let all: u64 = o.topics.values().sum();
            let shared = shared_channel_subs.unwrap_or(0) as usize >= nodes;
            let gossip_from_others = o.gossip * (nodes as u64 - 1) / nodes as u64;
            let (inbound, from_others) = if shared {
                (all + o.gossip, all - own + gossip_from_others)
            } else {
                (own + o.gossip, gossip_from_others)
            };
            extra["observed_own_topics"] = json!(own);
            extra["observed_other_nodes_topics"] = json!(all - own);
            extra["observed_inbound"] = json!(inbound);
            extra["observed_inbound_from_others"] = json!(from_others);
        }
        if let (Some(obj), Value::Object(more)) = (node.as_object_mut(), extra) {
            obj.extend(more);
        }
    }
    drop(sinks);
    let observed_json = observed.map(|o| {
        let mut channels: Vec<(String, u64)> = o.channels.into_iter().collect();
        channels.sort();
        json!({
            "comment_messages": o.topics.values().sum::<u64>(),
            "gossip_messages": o.gossip,
            "other_messages": o.other,
            "channels": channels.len(),
            "by_channel": if channels.len() <= 4 { json!(channels) } else { Value::Null },
        })
    });
    Ok(json!({
        "scenario": "routing",
        "server": args.label,
        "nodes": nodes,
        "subscribers_per_node": subs,
        "topics_per_node": topics,
        "rate_per_node": args.rate,
        "idle_nodes": args.idle_nodes,
        "duration_s": args.duration,
        "wall_s": round(wall, 3),
        "per_node": per_node,
        "observed": observed_json,
        "numsub": gossip_channel_subs,
        "broker_cpu_s": round(after.broker_cpu - before.broker_cpu, 3),
        "gen_cpu_s": round(gen, 3),
        "loadavg": loadavg(),
    }))
}

// ---------------------------------------------------------------- burst

async fn burst(args: Arc<Args>) -> Result<Value, AnyError> {
    if args.nodes.len() < 2 {
        return Err("burst needs two nodes".into());
    }
    let (a, b) = (args.nodes[0], args.nodes[1]);
    let subs = args.subscribers.unwrap_or(100);
    let m = args.messages;
    // A topic of its own per run (discuss keeps comments and replays them).
    let id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
        % 1_000_000_000;
    let topic = format!("comments:{id}");
    let event: Arc<str> = format!("{topic}:new").into();
    let received = Arc::new(AtomicU64::new(0));
    let sockets = join_all((0..subs).map(|_| (b, topic.clone(), "{}".to_owned())).collect(), args.concurrency).await?;
    for ws in sockets {
        count_event(ws, event.clone(), received.clone());
    }
    let pusher = connect_join(a, &topic, "{}").await?;
    let (mut sink, stream) = pusher.split();
    let replies = Arc::new(Replies::default());
    let window = Arc::new(tokio::sync::Semaphore::new(args.window));
    let last_reply = Arc::new(Mutex::new(Instant::now()));
    {
        let (window, last_reply) = (window.clone(), last_reply.clone());
        read_replies(stream, replies.clone(), move || {
            window.add_permits(1);
            *last_reply.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        });
    }
    let before = read_nodes(&args).await;
    let gen_before = gen_cpu();
    let start = Instant::now();
    let stall = (args.stall_ms > 0 && !args.broker_pids.is_empty()).then(|| {
        let (replies, args) = (replies.clone(), args.clone());
        tokio::spawn(async move {
            while replies.ok.load(Ordering::Relaxed) < (args.messages / 10) as u64 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let signal = |sig| {
                for pid in &args.broker_pids {
                    // SAFETY: kill(2) with the broker pids we were given.
                    unsafe { libc::kill(*pid as i32, sig) };
                }
            };
            let at = start.elapsed().as_secs_f64();
            signal(libc::SIGSTOP);
            tokio::time::sleep(Duration::from_millis(args.stall_ms)).await;
            signal(libc::SIGCONT);
            at
        })
    });
    for seq in 0..m {
        window.acquire().await?.forget();
        let payload = format!("{{\"content\":\"{seq}\"}}");
        sink.send(frame(Some("1"), &format!("p{seq}"), &topic, "comment:add", &payload)).await?;
    }
    // Every reply in (or 30 s without one).
    let replied = || replies.ok.load(Ordering::Relaxed) + replies.error_count();
    let mut last_count = 0;
    let mut still = Instant::now();
    while replied() < m as u64 && still.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if replied() != last_count {
            last_count = replied();
            still = Instant::now();
        }
    }
    let push_wall = last_reply.lock().unwrap_or_else(|e| e.into_inner()).duration_since(start).as_secs_f64();
    let acked = replies.ok.load(Ordering::Relaxed);
    // Quiet: all in, or nothing new for 3 s.
    let expected = acked * subs as u64;
    let mut last = received.load(Ordering::Relaxed);
    let mut still = Instant::now();
    while received.load(Ordering::Relaxed) < expected && still.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    let delivered_wall = start.elapsed().as_secs_f64();
    let after = read_nodes(&args).await;
    let gen = gen_cpu() - gen_before;
    let got = received.load(Ordering::Relaxed);
    drop(sink);
    let stalled_at = match stall {
        Some(t) => t.await.ok().map(|s| round(s, 3)),
        None => None,
    };
    Ok(json!({
        "scenario": "burst",
        "server": args.label,
        "subscribers_on_b": subs,
        "messages": m,
        "window": args.window,
        "broker_stalled_ms": args.stall_ms,
        "broker_stalled_at_s": stalled_at,
        "replied": replied(),
        "acked": acked,
        "errors": replies.errors(),
        "acked_per_s": round(acked as f64 / push_wall.max(1e-9), 1),
        "push_wall_s": round(push_wall, 3),
        "received_on_b": got,
        "expected_on_b": expected,
        "missing_on_b": expected.saturating_sub(got),
        "extra_on_b": got.saturating_sub(expected),
        "deliveries_per_s_on_b": round(got as f64 / delivered_wall.max(1e-9), 1),
        "until_quiet_s": round(delivered_wall, 3),
        "per_node": node_deltas(&args, &before, &after),
        "broker_cpu_s": round(after.broker_cpu - before.broker_cpu, 3),
        "gen_cpu_s": round(gen, 3),
        "loadavg": loadavg(),
    }))
}

// ---------------------------------------------------------------- presence

/// What a node's watchers know: presences (room and key
/// `{kind}{idx}n{node}`) with their number of metas, and counts of present
/// ones by kind and node.
#[derive(Default)]
struct Watcher {
    metas: HashMap<(String, String), i64>,
    /// Present keys (users, burst, watchers) held by each node.
    by_node: HashMap<usize, usize>,
    /// Present `b` (burst) keys.
    burst: usize,
    /// Present `u` keys.
    users: usize,
    /// Rooms joined (ok replies) and refused.
    joined: usize,
    refused: usize,
}

fn key_node(key: &str) -> Option<usize> {
    key.rsplit_once('n').and_then(|(_, n)| n.parse().ok())
}

impl Watcher {
    fn change(&mut self, room: &str, key: &str, metas: i64) {
        let id = (room.to_owned(), key.to_owned());
        let was = self.metas.get(&id).copied().unwrap_or(0);
        let now = was + metas;
        if now <= 0 {
            self.metas.remove(&id);
        } else {
            self.metas.insert(id, now);
        }
        let delta: i64 = match (was > 0, now > 0) {
            (false, true) => 1,
            (true, false) => -1,
            _ => return,
        };
        let bump = |n: &mut usize| *n = (*n as i64 + delta).max(0) as usize;
        match key.as_bytes().first() {
            Some(b'u') => bump(&mut self.users),
            Some(b'b') => bump(&mut self.burst),
            _ => {}
        }
        if let Some(node) = key_node(key) {
            bump(self.by_node.entry(node).or_default());
        }
    }

    /// Applies a `presence_state` or `presence_diff` payload of `room`.
    fn apply(&mut self, room: &str, event: &str, payload: &str) {
        let Ok(v) = serde_json::from_str::<Value>(payload) else { return };
        let metas = |entry: &Value| entry["metas"].as_array().map_or(1, |m| m.len() as i64);
        match event {
            "presence_state" => {
                if let Some(obj) = v.as_object() {
                    for (key, entry) in obj {
                        // A state replaces what we knew of this room's keys;
                        // rooms are joined once, so it only adds.
                        if !self.metas.contains_key(&(room.to_owned(), key.clone())) {
                            self.change(room, key, metas(entry));
                        }
                    }
                }
            }
            "phx_reply" => {
                if payload.contains("\"status\":\"ok\"") {
                    self.joined += 1;
                } else {
                    self.refused += 1;
                }
            }
            "presence_diff" => {
                if let Some(joins) = v["joins"].as_object() {
                    for (key, entry) in joins {
                        self.change(room, key, metas(entry));
                    }
                }
                if let Some(leaves) = v["leaves"].as_object() {
                    for (key, entry) in leaves {
                        self.change(room, key, -metas(entry));
                    }
                }
            }
            _ => {}
        }
    }
}

type Watchers = Vec<(usize, Arc<Mutex<Watcher>>)>;

/// Waits until `done` holds for every watcher `which` selects; the time
/// it took, or None after `limit`.
async fn until(
    watchers: &Watchers,
    which: impl Fn(usize) -> bool,
    done: impl Fn(&Watcher) -> bool,
    limit: Duration,
) -> (Option<f64>, HashMap<usize, f64>) {
    let start = Instant::now();
    let mut at: HashMap<usize, f64> = HashMap::new();
    loop {
        let mut all = true;
        for (node, w) in watchers.iter().filter(|(n, _)| which(*n)) {
            let ok = done(&w.lock().unwrap_or_else(|e| e.into_inner()));
            if ok {
                at.entry(*node).or_insert_with(|| start.elapsed().as_secs_f64());
            } else {
                all = false;
            }
        }
        // A node converged when both its watchers did: keep the later.
        if all {
            return (Some(start.elapsed().as_secs_f64()), at);
        }
        if start.elapsed() > limit {
            return (None, at);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn node_summary(w: &Watchers) -> Value {
    json!(w
        .iter()
        .map(|(n, w)| {
            let w = w.lock().unwrap_or_else(|e| e.into_inner());
            json!({"node": n, "users": w.users, "burst": w.burst})
        })
        .collect::<Vec<_>>())
}

/// Joins users `range` (each its own socket, drained from its join on);
/// fails on the first that fails.
async fn join_users(
    args: &Args,
    range: std::ops::Range<usize>,
    kind: char,
) -> Result<Vec<tokio::task::JoinHandle<()>>, AnyError> {
    let nodes = args.nodes.len();
    let results: Vec<Result<tokio::task::JoinHandle<()>, AnyError>> = futures_util::stream::iter(range)
        .map(|u| async move {
            let node = u % nodes;
            let room = u % args.rooms;
            let params = format!("{{\"name\":\"{kind}{u}n{node}\"}}");
            let ws = connect_join(args.nodes[node], &format!("room:bench-{room}"), &params).await?;
            Ok(drain(ws, |_| {}))
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Steady-state broker traffic per node over `--steady` s.
async fn steady(args: &Args) -> Value {
    let a = read_nodes(args).await;
    tokio::time::sleep(Duration::from_secs_f64(args.steady)).await;
    let b = read_nodes(args).await;
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let mut nodes = node_deltas(args, &a, &b);
    for n in &mut nodes {
        let total = n["published"].as_u64().zip(n["received"].as_u64()).map(|(p, r)| p + r);
        n["messages_per_s"] = json!(total.map(|t| round(t as f64 / wall, 2)));
    }
    json!({"wall_s": round(wall, 3), "per_node": nodes})
}

async fn presence(args: Arc<Args>) -> Result<Value, AnyError> {
    let nodes = args.nodes.len();
    let kill = args.kill.unwrap_or(nodes - 1).min(nodes - 1);
    // Watchers: two sockets per node (a socket joins at most 100 channels),
    // each in half the rooms, sharing the node's view. The joins are sent
    // at once and the frames read from the start, so no presence_state is
    // missed.
    let mut watchers: Watchers = Vec::new();
    for (n, node) in args.nodes.iter().enumerate() {
        let w = Arc::new(Mutex::new(Watcher::default()));
        for half in 0..2 {
            let mut ws = connect(*node).await?;
            for room in (0..args.rooms).filter(|r| r % 2 == half) {
                let params = format!("{{\"name\":\"w{}n{n}\"}}", 2 * n + half);
                let r = (room + 1).to_string();
                ws.send(frame(Some(&r), &r, &format!("room:bench-{room}"), "phx_join", &params)).await?;
            }
            let state = w.clone();
            drain(ws, move |text| {
                if let Ok((_, _, room, event, payload)) = serde_json::from_str::<Parsed>(text) {
                    state.lock().unwrap_or_else(|e| e.into_inner()).apply(room, event, payload.get());
                }
            });
        }
        watchers.push((n, w));
    }
    let rooms = args.rooms;
    let (all_in, _) = until(&watchers, |_| true, |w| w.joined + w.refused >= rooms, Duration::from_secs(30)).await;
    let refused: usize = watchers.iter().map(|(_, w)| w.lock().unwrap_or_else(|e| e.into_inner()).refused).sum();
    if all_in.is_none() || refused > 0 {
        return Err(format!("watchers could not join every room ({refused} refused)").into());
    }
    let mut tasks = Vec::new();
    let mut sizes = Vec::new();
    let mut joined = 0usize;
    let gen_before = gen_cpu();
    for &target in &args.users {
        let t = Instant::now();
        let more = join_users(&args, joined..target.max(joined), 'u').await?;
        let join_s = t.elapsed().as_secs_f64();
        tasks.extend(more);
        joined = target.max(joined);
        let want = joined;
        let (settled, _) = until(&watchers, |_| true, |w| w.users >= want, Duration::from_secs(60)).await;
        // Then let deltas and heartbeats settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
        sizes.push(json!({
            "users": joined,
            "join_s": round(join_s, 3),
            "seen_everywhere_s": settled.map(|s| round(s, 3)),
            "steady": steady(&args).await,
            "watchers": node_summary(&watchers),
        }));
    }
    // A burst of joins, spread over the nodes; every node's watchers must see all.
    let burst_from = joined;
    let t = Instant::now();
    let burst_sockets = {
        let want = args.burst;
        let joins = join_users(&args, burst_from..burst_from + args.burst, 'b');
        let seen = until(&watchers, |_| true, move |w| w.burst >= want, Duration::from_secs(60));
        let (sockets, seen) = tokio::join!(joins, seen);
        let joined_s = t.elapsed().as_secs_f64();
        (sockets?, seen, joined_s)
    };
    let (sockets, (converged, per_node_at), burst_joined_s) = burst_sockets;
    tasks.extend(sockets);
    let convergence = json!({
        "burst": args.burst,
        "all_joins_acked_s": round(burst_joined_s, 3),
        "all_nodes_see_all_s": converged.map(|s| round(s, 3)),
        "seen_after_last_ack_s": converged.map(|s| round(s - burst_joined_s, 3)),
        "seen_s_by_node": per_node_at.iter().map(|(n, s)| (n.to_string(), json!(round(*s, 3)))).collect::<serde_json::Map<_, _>>(),
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // SIGKILL one node; the others' watchers must see all its presences leave.
    let held_by_dead = {
        let w = watchers.iter().find(|(n, _)| *n != kill).map(|(_, w)| w.clone());
        w.map(|w| w.lock().unwrap_or_else(|e| e.into_inner()).by_node.get(&kill).copied().unwrap_or(0))
    };
    // SAFETY: kill(2) with a pid we were given.
    unsafe {
        libc::kill(args.pids[kill] as i32, libc::SIGKILL);
    }
    let (gone, gone_at) =
        until(&watchers, |n| n != kill, |w| w.by_node.get(&kill).copied().unwrap_or(0) == 0, Duration::from_secs(60))
            .await;
    let dead = json!({
        "killed_node": kill,
        "presences_held": held_by_dead,
        "all_gone_s": gone.map(|s| round(s, 3)),
        "gone_s_by_node": gone_at.iter().map(|(n, s)| (n.to_string(), json!(round(*s, 3)))).collect::<serde_json::Map<_, _>>(),
    });
    let gen = gen_cpu() - gen_before;
    for t in &tasks {
        t.abort();
    }
    Ok(json!({
        "scenario": "presence",
        "server": args.label,
        "nodes": nodes,
        "rooms": args.rooms,
        "sizes": sizes,
        "convergence": convergence,
        "dead_node": dead,
        "gen_cpu_s": round(gen, 3),
        "loadavg": loadavg(),
    }))
}

fn main() {
    raise_nofile();
    let args = Arc::new(parse_args());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let result = match args.scenario.as_str() {
        "routing" => rt.block_on(routing(args.clone())),
        "burst" => rt.block_on(burst(args.clone())),
        "presence" => rt.block_on(presence(args.clone())),
        _ => usage(),
    };
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("multinode {}: {e}", args.scenario);
            std::process::exit(1);
        }
    }
    // Sockets and tasks go with the runtime.
    rt.shutdown_timeout(Duration::from_millis(100));
}
