//! `recbench`: the history benchmarks of issue 24 (`bench/recovery.sh`),
//! against `recnode` (or the `floor` server, for the scenarios it can
//! answer), one JSON line per scenario.
//!
//! ```text
//! recbench --url ws://127.0.0.1:PORT/socket --pid NODE_PID [--broker-pids P,P] --label L --scenario S ...
//!   (NODE_PID: the node whose CPU and memory are measured; with
//!   `--rejoin-url`, the one rejoined)
//!   fanout   [--subscribers N] [--messages M] [--bytes B] [--positions]
//!            N sockets on one topic (asking for positions or not), one
//!            publisher pushing M comment:add one at a time, each once every
//!            subscriber got the previous: node (and broker) CPU per broadcast
//!            and per delivery
//!   recover  [--runs R] [--missed K] [--bytes B]
//!            R times: a client joins asking for positions, leaves, K
//!            broadcasts are made, it connects again and rejoins with its
//!            position; the time until it has all K (and, in the same
//!            loop, a plain connect + join on the same node, the floor);
//!            [--rejoin-url ws://…] rejoins (and plain joins) on that other
//!            node, which does not follow the topic
//!   storm    [--clients C] [--topics T] [--missed K] [--bytes B] [--plain]
//!            C clients joined over T topics lose their connections, K
//!            broadcasts per topic are made, and all C reconnect and rejoin
//!            at once with their positions (--plain: without, the floor):
//!            time until all are recovered, node CPU, peak RSS
//!   fill     [--topics T] [--missed K] [--bytes B]
//!            K broadcasts of B bytes on each of T topics, every one back
//!            at the generator (so kept where it is kept); node and broker
//!            RSS before and after
//! ```
//!
//! B is the broadcast's payload, `{"comment":{"content":"…"}}`, in bytes.
//! Sockets are bound to 127.0.0.2..=127.0.0.255 in turn, like `loadgen`'s.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{cpu_seconds, loadavg, percentile_us, raise_nofile, round, rss_bytes, sample};
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Clone, Debug)]
struct Args {
    addr: SocketAddr,
    url: String,
    pid: u32,
    broker_pids: Vec<u32>,
    label: String,
    scenario: String,
    subscribers: usize,
    messages: usize,
    bytes: usize,
    positions: bool,
    runs: usize,
    missed: usize,
    clients: usize,
    topics: usize,
    plain: bool,
    /// `recover --rejoin-url`: the rejoins (and the plain joins) go to this
    /// other node, which does not follow the topic.
    rejoin: Option<(SocketAddr, String)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: recbench --url ws://IP:PORT/socket --pid PID [--broker-pids P,P] [--label L] \
         --scenario fanout|recover|storm|fill [--subscribers N] [--messages M] [--bytes B] [--positions] \
         [--runs R] [--missed K] [--clients C] [--topics T] [--plain]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
        url: String::new(),
        pid: 0,
        broker_pids: Vec::new(),
        label: "node".into(),
        scenario: String::new(),
        subscribers: 100,
        messages: 1000,
        bytes: 200,
        positions: false,
        runs: 200,
        missed: 100,
        clients: 2000,
        topics: 20,
        plain: false,
        rejoin: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        fn num<T: std::str::FromStr>(s: String) -> T {
            s.parse().unwrap_or_else(|_| usage())
        }
        match flag.as_str() {
            "--url" => a.url = val(),
            "--pid" => a.pid = num(val()),
            "--broker-pids" => {
                a.broker_pids = val().split(',').filter(|p| !p.is_empty()).map(|p| num(p.into())).collect()
            }
            "--label" => a.label = val(),
            "--scenario" => a.scenario = val(),
            "--subscribers" => a.subscribers = num(val()),
            "--messages" => a.messages = num(val()),
            "--bytes" => a.bytes = num(val()),
            "--positions" => a.positions = true,
            "--runs" => a.runs = num(val()),
            "--missed" => a.missed = num(val()),
            "--clients" => a.clients = num(val()),
            "--topics" => a.topics = num(val()),
            "--plain" => a.plain = true,
            "--rejoin-url" => {
                let url = val();
                a.rejoin = Some((parse_url(&url).unwrap_or_else(|| usage()), websocket_url(&url)));
            }
            _ => usage(),
        }
    }
    if a.url.is_empty() || a.scenario.is_empty() || a.pid == 0 {
        usage();
    }
    a.addr = parse_url(&a.url).unwrap_or_else(|| usage());
    a.url = websocket_url(&a.url);
    a.topics = a.topics.max(1);
    a
}

/// The address of `ws://IP:PORT/path`.
fn parse_url(url: &str) -> Option<SocketAddr> {
    url.trim_start_matches("ws://").split('/').next()?.parse().ok()
}

/// The V2 WebSocket URL of the socket at `url`.
fn websocket_url(url: &str) -> String {
    format!("{}/websocket?vsn=2.0.0", url.trim_end_matches('/'))
}

// ---------------------------------------------------------------- the client

/// Connects socket number `idx` from source address 127.0.0.(2 + idx mod 254).
async fn connect(args: &Args, idx: usize) -> Result<Ws, AnyError> {
    bench::client::connect_url(args.addr, &args.url, idx).await
}

/// Connects to the node rejoins go to (`--rejoin-url`, else the node).
async fn connect_rejoin(args: &Args, idx: usize) -> Result<Ws, AnyError> {
    match &args.rejoin {
        Some((addr, url)) => bench::client::connect_url(*addr, url, idx).await,
        None => connect(args, idx).await,
    }
}

fn frame(join_ref: &str, msg_ref: &str, topic: &str, event: &str, payload: &str) -> Message {
    Message::Text(format!("[\"{join_ref}\",\"{msg_ref}\",\"{topic}\",\"{event}\",{payload}]").into())
}

/// A server frame: join_ref, ref, topic, event, payload.
type Frame = (Option<String>, Option<String>, String, String, Box<RawValue>);

async fn next_frame(ws: &mut Ws) -> Result<Frame, AnyError> {
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if std::env::var_os("RECBENCH_TRACE").is_some() {
            eprintln!("<- {msg:?}");
        }
        if let Message::Text(text) = msg {
            if let Ok(f) = serde_json::from_str::<Frame>(text.as_str()) {
                return Ok(f);
            }
        }
    }
    Err("connection closed".into())
}

/// The `comment:add` payload whose broadcast payload is `bytes` long:
/// `{"comment":{"content":"SEQ……"}}`, SEQ on 8 digits.
fn comment(seq: usize, bytes: usize) -> String {
    let pad = bytes.saturating_sub(26 + 8);
    format!("{{\"content\":\"{seq:08}{}\"}}", "x".repeat(pad))
}

/// The SEQ of a broadcast's payload.
fn seq_of(payload: &RawValue) -> Option<usize> {
    let p = payload.get();
    let i = p.find("\"content\":\"")? + 11;
    p.get(i..i + 8)?.parse().ok()
}

/// What a join got: its reply was ok, and (asking for positions) the
/// `phx_recovery` payload with its position.
struct Joined {
    position: Option<String>,
    recovered: Option<bool>,
    missed: u64,
}

/// Joins `topic` (join_ref `jr`), with `{"phx_position": …}` when
/// `position` is `Some`; reads up to the reply (and `phx_recovery`).
async fn join(ws: &mut Ws, jr: &str, topic: &str, position: Option<Option<&str>>) -> Result<Joined, AnyError> {
    let payload = match position {
        None => "{}".to_owned(),
        Some(None) => "{\"phx_position\":null}".to_owned(),
        Some(Some(p)) => format!("{{\"phx_position\":\"{p}\"}}"),
    };
    ws.send(frame(jr, jr, topic, "phx_join", &payload)).await?;
    loop {
        let (_, r, t, event, payload) = next_frame(ws).await?;
        if t == topic && event == "phx_reply" && r.as_deref() == Some(jr) {
            if !payload.get().contains("\"status\":\"ok\"") {
                return Err(format!("join of {topic} refused: {}", payload.get()).into());
            }
            if position.is_none() {
                return Ok(Joined { position: None, recovered: None, missed: 0 });
            }
        } else if t == topic && event == "phx_recovery" {
            let v: Value = serde_json::from_str(payload.get())?;
            return Ok(Joined {
                position: r,
                recovered: v["recovered"].as_bool(),
                missed: v["missed"].as_u64().unwrap_or(0),
            });
        }
    }
}

/// Reads until `count` broadcasts of `event` arrived; the last SEQ.
async fn read_broadcasts(ws: &mut Ws, event: &str, count: u64) -> Result<Option<usize>, AnyError> {
    let mut last = None;
    let mut got = 0;
    while got < count {
        let (_, _, _, ev, payload) = next_frame(ws).await?;
        if ev == event {
            got += 1;
            last = seq_of(&payload);
        }
    }
    Ok(last)
}

/// The publisher: pushes `k` comments on `topic` (joined with join_ref
/// `jr`), each once the previous was answered, then reads until its own
/// broadcast of the last came back (with a broker, once it is kept there).
async fn publish(ws: &mut Ws, jr: &str, topic: &str, k: usize, first_seq: usize, bytes: usize) -> Result<(), AnyError> {
    let event = format!("{topic}:new");
    let last = first_seq + k - 1;
    // Its own broadcast may come before or after the reply.
    let mut back = false;
    for seq in first_seq..=last {
        let r = format!("p{seq}");
        ws.send(frame(jr, &r, topic, "comment:add", &comment(seq, bytes))).await?;
        loop {
            let (_, fr, _, ev, payload) = next_frame(ws).await?;
            if ev == event && seq_of(&payload) == Some(last) {
                back = true;
            } else if ev == "phx_reply" && fr.as_deref() == Some(&r) {
                if !payload.get().contains("\"status\":\"ok\"") {
                    return Err(format!("comment:add refused: {}", payload.get()).into());
                }
                break;
            }
        }
    }
    while !back {
        let (_, _, _, ev, payload) = next_frame(ws).await?;
        back = ev == event && seq_of(&payload) == Some(last);
    }
    Ok(())
}

fn unique_topic(tag: usize) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    format!("comments:{}{tag:03}", ms % 1_000_000_000)
}

fn brokers_cpu(args: &Args) -> f64 {
    args.broker_pids.iter().map(|&p| cpu_seconds(p)).sum()
}

fn brokers_rss(args: &Args) -> u64 {
    args.broker_pids.iter().map(|&p| rss_bytes(p)).sum()
}

fn header(args: &Args) -> Value {
    json!({
        "scenario": args.scenario,
        "label": args.label,
        "bytes": args.bytes,
        "loadavg": loadavg(),
    })
}

fn merge(mut v: Value, extra: Value) -> Value {
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn us(d: &[Duration], p: f64) -> f64 {
    round(percentile_us(d, p), 0)
}

// ---------------------------------------------------------------- fanout

async fn fanout(args: Arc<Args>) -> Result<Value, AnyError> {
    let (n, m) = (args.subscribers, args.messages);
    let topic = unique_topic(0);
    let event = format!("{topic}:new");
    let position = args.positions.then_some(None);
    let mut subs = Vec::with_capacity(n);
    for i in 0..n {
        let mut ws = connect(&args, i).await?;
        join(&mut ws, "1", &topic, position).await?;
        subs.push(ws);
    }
    // Each subscriber counts what it got; the publisher waits for all.
    let got = Arc::new(AtomicU64::new(0));
    let positioned = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for mut ws in subs {
        let (got, positioned, notify, event) = (got.clone(), positioned.clone(), notify.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok((_, r, _, ev, _)) = next_frame(&mut ws).await {
                if ev == event {
                    if r.is_some_and(|r| r.contains(':')) {
                        positioned.fetch_add(1, Ordering::Relaxed);
                    }
                    got.fetch_add(1, Ordering::Relaxed);
                    notify.notify_one();
                }
            }
        }));
    }
    let mut publisher = connect(&args, n).await?;
    join(&mut publisher, "1", &topic, None).await?;
    let (before, broker_before, gen_before) = (sample(args.pid), brokers_cpu(&args), cpu_seconds(std::process::id()));
    let start = Instant::now();
    let mut timeouts = 0;
    for seq in 0..m {
        let r = format!("p{seq}");
        publisher.send(frame("1", &r, &topic, "comment:add", &comment(seq, args.bytes))).await?;
        let want = ((seq + 1) * n) as u64;
        let wait = async {
            while got.load(Ordering::Relaxed) < want {
                notify.notified().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
            timeouts += 1;
        }
        // Its reply and its own copy of the broadcast.
        loop {
            let (_, fr, _, ev, _) = next_frame(&mut publisher).await?;
            if ev == "phx_reply" && fr.as_deref() == Some(&r) {
                break;
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (after, broker_after, gen_after) = (sample(args.pid), brokers_cpu(&args), cpu_seconds(std::process::id()));
    for t in tasks {
        t.abort();
    }
    let cpu = after.cpu_s - before.cpu_s;
    let broker_cpu = broker_after - broker_before;
    let delivered = got.load(Ordering::Relaxed);
    Ok(merge(
        header(&args),
        json!({
            "subscribers": n,
            "messages": m,
            "positions": args.positions,
            "delivered": delivered,
            "with_position": positioned.load(Ordering::Relaxed),
            "missing": (n * m) as u64 - delivered.min((n * m) as u64),
            "timeouts": timeouts,
            "wall_s": round(wall, 3),
            "node_cpu_s": round(cpu, 3),
            "cpu_us_per_broadcast": round(cpu * 1e6 / m as f64, 2),
            "cpu_us_per_delivery": round(cpu * 1e6 / (n * m).max(1) as f64, 3),
            "broker_cpu_s": round(broker_cpu, 3),
            "broker_cpu_us_per_broadcast": round(broker_cpu * 1e6 / m as f64, 2),
            "gen_cpu_s": round(gen_after - gen_before, 3),
        }),
    ))
}

// ---------------------------------------------------------------- recover

async fn recover(args: Arc<Args>) -> Result<Value, AnyError> {
    let topic = unique_topic(1);
    let event = format!("{topic}:new");
    let k = args.missed;
    let mut publisher = connect(&args, 0).await?;
    join(&mut publisher, "1", &topic, None).await?;
    // One broadcast first, so the topic's stream exists.
    publish(&mut publisher, "1", &topic, 1, 0, args.bytes).await?;
    let (mut plain, mut recovered, mut replied) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = 1;
    let mut not_recovered = 0;
    let (before, broker_before) = (sample(args.pid), brokers_cpu(&args));
    let mut recover_cpu = 0.0;
    for run in 0..args.runs {
        // The floor: connect and join, no position.
        let t = Instant::now();
        let mut ws = connect_rejoin(&args, 1 + run % 250).await?;
        join(&mut ws, "1", &topic, None).await?;
        plain.push(t.elapsed());
        drop(ws);
        // Joined with positions, then gone.
        let mut ws = connect(&args, 2 + run % 250).await?;
        let first = join(&mut ws, "1", &topic, Some(None)).await?;
        let position = first.position.ok_or("no position in phx_recovery")?;
        drop(ws);
        publish(&mut publisher, "1", &topic, k, seq, args.bytes).await?;
        seq += k;
        // Back, with the position: the time until all K are in.
        let cpu0 = cpu_seconds(args.pid);
        let t = Instant::now();
        let mut ws = connect_rejoin(&args, 3 + run % 250).await?;
        let again = join(&mut ws, "1", &topic, Some(Some(&position))).await?;
        replied.push(t.elapsed());
        if again.recovered != Some(true) || again.missed != k as u64 {
            not_recovered += 1;
        }
        let last = read_broadcasts(&mut ws, &event, again.missed).await?;
        recovered.push(t.elapsed());
        recover_cpu += cpu_seconds(args.pid) - cpu0;
        if last != Some(seq - 1) {
            return Err(format!("run {run}: the last recovered is {last:?}, not {}", seq - 1).into());
        }
        drop(ws);
    }
    let (after, broker_after) = (sample(args.pid), brokers_cpu(&args));
    plain.sort_unstable();
    recovered.sort_unstable();
    replied.sort_unstable();
    let ratio = percentile_us(&recovered, 50.0) / percentile_us(&plain, 50.0);
    Ok(merge(
        header(&args),
        json!({
            "runs": args.runs,
            "missed": k,
            "other_node": args.rejoin.is_some(),
            "not_recovered": not_recovered,
            "plain_join_us": {"p50": us(&plain, 50.0), "p99": us(&plain, 99.0)},
            "recover_reply_us": {"p50": us(&replied, 50.0), "p99": us(&replied, 99.0)},
            "recover_all_us": {"p50": us(&recovered, 50.0), "p99": us(&recovered, 99.0), "max": us(&recovered, 100.0)},
            "ratio_p50": round(ratio, 2),
            "node_cpu_us_per_recovery": round(recover_cpu * 1e6 / args.runs as f64, 0),
            "node_cpu_s": round(after.cpu_s - before.cpu_s, 3),
            "broker_cpu_s": round(broker_after - broker_before, 3),
        }),
    ))
}

// ---------------------------------------------------------------- storm

async fn storm(args: Arc<Args>) -> Result<Value, AnyError> {
    let (c, t, k) = (args.clients, args.topics, args.missed);
    let topics: Vec<String> = (0..t).map(unique_topic).collect();
    let asking = (!args.plain).then_some(None);
    // Everyone joined (64 at a time), their positions kept.
    let joined: Vec<_> = futures_util::stream::iter(0..c)
        .map(|i| {
            let (args, topic) = (args.clone(), topics[i % t].clone());
            async move {
                let mut ws = connect(&args, i).await?;
                let j = join(&mut ws, "1", &topic, asking).await?;
                Ok::<_, AnyError>((i, ws, j.position))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut positions: Vec<Option<String>> = vec![None; c];
    let mut sockets = Vec::new();
    for r in joined {
        let (i, ws, p) = r?;
        sockets.push(ws);
        positions[i] = p;
    }
    let mut publisher = connect(&args, c).await?;
    for (i, topic) in topics.iter().enumerate() {
        join(&mut publisher, &format!("{}", i + 1), topic, None).await?;
    }
    // The connections die (no close handshake), the node notices.
    drop(sockets);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, topic) in topics.iter().enumerate() {
        publish(&mut publisher, &format!("{}", i + 1), topic, k, 0, args.bytes).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Peak RSS: a thread samples the node every 5 ms.
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), args.pid);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let (before, gen_before) = (sample(args.pid), cpu_seconds(std::process::id()));
    let start = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|i| {
            let (args, topic, position) = (args.clone(), topics[i % t].clone(), positions[i].clone());
            tokio::spawn(async move {
                let event = format!("{topic}:new");
                let mut ws = connect(&args, i).await?;
                let connected = start.elapsed();
                let asked = if args.plain { None } else { Some(position.as_deref()) };
                let j = join(&mut ws, "1", &topic, asked).await?;
                let ok = args.plain || (j.recovered == Some(true) && j.missed == k as u64);
                if !args.plain {
                    read_broadcasts(&mut ws, &event, j.missed).await?;
                }
                Ok::<_, AnyError>((connected, start.elapsed(), ok, ws))
            })
        })
        .collect();
    let (mut done, mut connected, mut joining) = (Vec::with_capacity(c), Vec::with_capacity(c), Vec::with_capacity(c));
    let (mut failed, mut not_recovered) = (0, 0);
    let mut keep = Vec::with_capacity(c);
    for task in tasks {
        match task.await {
            Ok(Ok((conn, d, ok, ws))) => {
                done.push(d);
                connected.push(conn);
                joining.push(d - conn);
                not_recovered += usize::from(!ok);
                keep.push(ws);
            }
            Ok(Err(e)) => {
                if failed == 0 {
                    eprintln!("storm: a client failed: {e}");
                }
                failed += 1;
            }
            Err(_) => failed += 1,
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let (after, gen_after) = (sample(args.pid), cpu_seconds(std::process::id()));
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    done.sort_unstable();
    connected.sort_unstable();
    joining.sort_unstable();
    let ms = |d: &[Duration], p: f64| round(percentile_us(d, p) / 1e3, 1);
    let cpu = after.cpu_s - before.cpu_s;
    drop(keep);
    Ok(merge(
        header(&args),
        json!({
            "clients": c,
            "topics": t,
            "missed": if args.plain { 0 } else { k },
            "plain": args.plain,
            "failed": failed,
            "not_recovered": not_recovered,
            "all_done_s": round(done.last().map_or(f64::NAN, Duration::as_secs_f64), 3),
            "client_ms": {"p50": ms(&done, 50.0), "p99": ms(&done, 99.0)},
            "connected_ms": {"p50": ms(&connected, 50.0), "p99": ms(&connected, 99.0), "max": ms(&connected, 100.0)},
            "join_after_connect_ms": {"p50": ms(&joining, 50.0), "p99": ms(&joining, 99.0), "max": ms(&joining, 100.0)},
            "wall_s": round(wall, 3),
            "node_cpu_s": round(cpu, 3),
            "node_cpu_us_per_client": round(cpu * 1e6 / c as f64, 1),
            "rss_before": before.rss,
            "rss_peak": peak.load(Ordering::Relaxed).max(after.rss),
            "rss_after": after.rss,
            "gen_cpu_s": round(gen_after - gen_before, 3),
        }),
    ))
}

// ---------------------------------------------------------------- fill

async fn fill(args: Arc<Args>) -> Result<Value, AnyError> {
    const PER_SOCKET: usize = 50;
    let (t, k) = (args.topics, args.missed);
    let topics: Vec<String> = (0..t).map(|i| format!("{}{i:05}", unique_topic(0))).collect();
    let (before, broker_rss_before) = (sample(args.pid), brokers_rss(&args));
    let start = Instant::now();
    let chunks: Vec<Vec<String>> = topics.chunks(PER_SOCKET).map(<[String]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, mine)| {
            let args = args.clone();
            tokio::spawn(async move {
                let mut ws = connect(&args, i).await?;
                for (j, topic) in mine.iter().enumerate() {
                    join(&mut ws, &format!("{}", j + 1), topic, None).await?;
                }
                // K rounds over its topics, up to 64 pushes unanswered; one
                // the broker's queue refused ("broker busy") is sent again.
                let (total, mut sent, mut replies, mut back, mut retried) = (mine.len() * k, 0, 0, 0, 0u64);
                let push = |n: usize| {
                    let (seq, j) = (n / mine.len(), n % mine.len());
                    frame(&format!("{}", j + 1), &format!("p{n}"), &mine[j], "comment:add", &comment(seq, args.bytes))
                };
                while replies < total || back < total {
                    while sent < total && sent - replies < 64 {
                        ws.send(push(sent)).await?;
                        sent += 1;
                    }
                    let (_, r, _, ev, payload) = next_frame(&mut ws).await?;
                    if ev == "phx_reply" {
                        if payload.get().contains("\"status\":\"ok\"") {
                            replies += 1;
                        } else if payload.get().contains("broker busy") {
                            let n = r
                                .as_deref()
                                .and_then(|r| r.strip_prefix('p')?.parse().ok())
                                .ok_or("a reply to what?")?;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            ws.send(push(n)).await?;
                            retried += 1;
                        } else {
                            return Err(format!("comment:add refused: {}", payload.get()).into());
                        }
                    } else if ev.ends_with(":new") {
                        back += 1;
                    }
                }
                Ok::<_, AnyError>((ws, retried))
            })
        })
        .collect();
    let (mut sockets, mut retried) = (Vec::new(), 0);
    for task in tasks {
        let (ws, r) = task.await??;
        sockets.push(ws);
        retried += r;
    }
    let wall = start.elapsed().as_secs_f64();
    // What is kept stays while the sockets are joined; let the allocator settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, broker_rss_after) = (sample(args.pid), brokers_rss(&args));
    drop(sockets);
    Ok(merge(
        header(&args),
        json!({
            "topics": t,
            "kept": k,
            "broadcasts": t * k,
            "busy_retried": retried,
            "wall_s": round(wall, 3),
            "node_rss_before": before.rss,
            "node_rss_after": after.rss,
            "node_rss_per_topic": round((after.rss as f64 - before.rss as f64) / t as f64, 0),
            "broker_rss_before": broker_rss_before,
            "broker_rss_after": broker_rss_after,
            "broker_rss_per_topic": round((broker_rss_after as f64 - broker_rss_before as f64) / t as f64, 0),
        }),
    ))
}

fn main() {
    raise_nofile();
    let args = Arc::new(parse_args());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result = rt.block_on(async {
        match args.scenario.as_str() {
            "fanout" => fanout(args.clone()).await,
            "recover" => recover(args.clone()).await,
            "storm" => storm(args.clone()).await,
            "fill" => fill(args.clone()).await,
            _ => usage(),
        }
    });
    match result {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("recbench {}: {e}", args.scenario);
            std::process::exit(1);
        }
    }
}
