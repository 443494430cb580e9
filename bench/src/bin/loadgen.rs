//! `loadgen`: drives a Phoenix V2 WebSocket server (the `discuss` example or
//! the `floor` server) and prints one JSON line of figures per scenario,
//! with the server's CPU time per operation read from `/proc/PID/stat`.
//!
//! ```text
//! loadgen --url ws://127.0.0.1:PORT/socket --pid SERVER_PID --scenario idle|fanout|rtt|churn
//!         [--label NAME] [--sockets N] [--topics T] [--duration S] [--rate R]
//!         [--messages M] [--concurrency C] [--procs K] [--settle S]
//! ```
//!
//! Client sockets are bound to source addresses 127.0.0.2..=127.0.0.255 in
//! turn, so ephemeral ports never run out. The generator runs on a
//! current-thread runtime to leave the cores to the server; `idle` with more
//! sockets than one process may open is split over `--procs K` child
//! processes (the parent measures, the children hold the sockets).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::client::{connect_url, frame, AnyError, Parsed, Ws};
use bench::{loadavg, percentile_us, raise_nofile, round, sample, Sample};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
struct Args {
    url: String,
    addr: SocketAddr,
    pid: u32,
    scenario: String,
    label: String,
    sockets: usize,
    topics: usize,
    duration: f64,
    rate: f64,
    messages: usize,
    concurrency: usize,
    procs: usize,
    settle: f64,
    child: Option<(usize, usize)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --url ws://HOST:PORT/socket --pid PID --scenario idle|fanout|rtt|churn \
         [--label NAME] [--sockets N] [--topics T] [--duration S] [--rate R] [--messages M] \
         [--concurrency C] [--procs K] [--settle S]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
        pid: 0,
        scenario: String::new(),
        label: "server".into(),
        sockets: 1000,
        topics: 100,
        duration: 10.0,
        rate: 0.0,
        messages: 20,
        concurrency: 64,
        procs: 1,
        settle: 2.0,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--url" => a.url = val(),
            "--pid" => a.pid = val().parse().unwrap_or_else(|_| usage()),
            "--scenario" => a.scenario = val(),
            "--label" => a.label = val(),
            "--sockets" => a.sockets = val().parse().unwrap_or_else(|_| usage()),
            "--topics" => a.topics = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = val().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = val().parse().unwrap_or_else(|_| usage()),
            "--messages" => a.messages = val().parse().unwrap_or_else(|_| usage()),
            "--concurrency" => a.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--procs" => a.procs = val().parse().unwrap_or_else(|_| usage()),
            "--settle" => a.settle = val().parse().unwrap_or_else(|_| usage()),
            "--child" => {
                let v = val();
                let (i, k) = v.split_once('/').unwrap_or_else(|| usage());
                a.child = Some((i.parse().unwrap_or_else(|_| usage()), k.parse().unwrap_or_else(|_| usage())));
            }
            _ => usage(),
        }
    }
    if a.url.is_empty() || a.scenario.is_empty() || (a.pid == 0 && a.child.is_none()) {
        usage();
    }
    let hostport = a.url.trim_start_matches("ws://").split('/').next().unwrap_or_default();
    a.addr = hostport.parse().unwrap_or_else(|_| {
        eprintln!("--url must be ws://IP:PORT/path");
        usage()
    });
    a.url = format!("{}/websocket?vsn=2.0.0", a.url.trim_end_matches('/'));
    a.topics = a.topics.max(1);
    a.concurrency = a.concurrency.max(1);
    a.procs = a.procs.max(1);
    a
}

/// Connects socket number `idx` from source address 127.0.0.(2 + idx mod 254).
async fn connect(args: &Args, idx: usize) -> Result<Ws, AnyError> {
    connect_url(args.addr, &args.url, idx).await
}

/// Reads frames until the reply to `msg_ref`; true when its status is ok.
async fn await_reply(ws: &mut Ws, msg_ref: &str) -> Result<bool, AnyError> {
    while let Some(msg) = ws.next().await {
        if let Message::Text(text) = msg? {
            let Ok((_, r, _, event, payload)) = serde_json::from_str::<Parsed>(text.as_str()) else {
                continue;
            };
            if event == "phx_reply" && r == Some(msg_ref) {
                return Ok(payload.get().contains("\"status\":\"ok\""));
            }
        }
    }
    Err("connection closed before the reply".into())
}

async fn connect_join(args: &Args, idx: usize, topic: &str) -> Result<Ws, AnyError> {
    let mut ws = connect(args, idx).await?;
    ws.send(frame(Some("1"), "1", topic, "phx_join", "{}")).await?;
    if !await_reply(&mut ws, "1").await? {
        return Err(format!("join of {topic} refused").into());
    }
    Ok(ws)
}

/// Figures common to every scenario.
fn base(args: &Args, scenario: &str, n: usize, before: Sample, after: Sample, wall: f64, ops: u64) -> Value {
    let cpu = after.cpu_s - before.cpu_s;
    json!({
        "scenario": scenario,
        "server": args.label,
        "n": n,
        "ops": ops,
        "wall_s": round(wall, 3),
        "ops_per_s": round(ops as f64 / wall, 1),
        "server_cpu_s": round(cpu, 3),
        "cpu_us_per_op": round(cpu * 1e6 / ops.max(1) as f64, 2),
        "server_cpu_util": round(cpu / wall, 3),
        "rss_before": before.rss,
        "rss_after": after.rss,
        "loadavg": loadavg(),
    })
}

fn merge(mut v: Value, extra: Value) -> Value {
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    v
}

fn self_cpu() -> f64 {
    bench::cpu_seconds(std::process::id())
}

// ---------------------------------------------------------------- idle

/// Parent side of `idle`: starts `procs` children that each connect and join
/// their share, and measures the server around them.
fn idle_parent(args: &Args) -> Value {
    let exe = std::env::current_exe().expect("own executable");
    let before = sample(args.pid);
    let start = Instant::now();
    let mut children = Vec::new();
    for i in 0..args.procs {
        let child = Command::new(&exe)
            .args(std::env::args().skip(1))
            .args(["--child", &format!("{i}/{}", args.procs)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a generator process");
        children.push(child);
    }
    let (mut ok, mut failed, mut gen_cpu) = (0u64, 0u64, 0.0f64);
    let mut first_error = String::new();
    for child in &mut children {
        let mut line = String::new();
        let stdout = child.stdout.as_mut().expect("piped");
        BufReader::new(stdout).read_line(&mut line).ok();
        // "joined OK FAILED GEN_CPU_S FIRST_ERROR..."
        let mut f = line.split_whitespace();
        f.next();
        ok += f.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        failed += f.next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        gen_cpu += f.next().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        let rest: Vec<&str> = f.collect();
        if first_error.is_empty() && !rest.is_empty() {
            first_error = rest.join(" ");
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let joined = sample(args.pid);
    std::thread::sleep(Duration::from_secs_f64(args.settle));
    let settled = sample(args.pid);
    for child in &mut children {
        drop(child.stdin.take());
    }
    for child in &mut children {
        let _ = child.wait();
    }
    std::thread::sleep(Duration::from_secs_f64(args.settle));
    let closed = sample(args.pid);
    let per_socket = (settled.rss as f64 - before.rss as f64) / ok.max(1) as f64;
    let v = base(args, "idle", args.sockets, before, joined, wall, ok);
    merge(
        v,
        json!({
            "topics": args.topics,
            "procs": args.procs,
            "joined": ok,
            "failed": failed,
            "first_error": first_error,
            "connect_join_per_s": round(ok as f64 / wall, 1),
            "rss_settled": settled.rss,
            "rss_after_close": closed.rss,
            "bytes_per_socket": per_socket.round(),
            "idle_cpu_s_during_settle": round(settled.cpu_s - joined.cpu_s, 3),
            "gen_cpu_s": round(gen_cpu, 3),
        }),
    )
}

/// Child side of `idle`: connects its share, says so, holds the sockets
/// (heartbeating every 25 s) until stdin closes.
async fn idle_child(args: Arc<Args>, shard: usize, shards: usize) {
    let indices: Vec<usize> = (0..args.sockets).filter(|i| i % shards == shard).collect();
    let errors = Arc::new(Mutex::new((0u64, String::new())));
    let sockets: Vec<Ws> = futures_util::stream::iter(indices)
        .map(|i| {
            let args = args.clone();
            let errors = errors.clone();
            async move {
                let topic = format!("comments:{}", i % args.topics);
                match connect_join(&args, i, &topic).await {
                    Ok(ws) => Some(ws),
                    Err(e) => {
                        let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
                        errs.0 += 1;
                        if errs.1.is_empty() {
                            errs.1 = e.to_string();
                        }
                        None
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .filter_map(|ws| async move { ws })
        .collect()
        .await;
    let (failed, first) = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!("joined {} {} {:.3} {}", sockets.len(), failed, self_cpu(), first.replace('\n', " "));
    std::io::stdout().flush().ok();
    let mut sockets = sockets;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    let mut beat = tokio::time::interval(Duration::from_secs(25));
    beat.tick().await;
    let mut n = 0u64;
    loop {
        tokio::select! {
            r = tokio::io::AsyncReadExt::read(&mut stdin, &mut buf) => {
                if matches!(r, Ok(0) | Err(_)) {
                    break;
                }
            }
            _ = beat.tick() => {
                n += 1;
                for ws in &mut sockets {
                    let _ = ws.send(frame(None, &format!("hb{n}"), "phoenix", "heartbeat", "{}")).await;
                }
            }
        }
    }
    // Dropping the sockets closes them; the server sees EOF.
    drop(sockets);
}

// ---------------------------------------------------------------- fanout

async fn fanout(args: Arc<Args>) -> Value {
    let n = args.sockets;
    let m = args.messages;
    // A topic of its own per run: discuss keeps comments, and replays them on join.
    let topic_id = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
        % 1_000_000_000;
    let topic = format!("comments:{topic_id}");
    let event = format!("{topic}:new");
    let counts: Arc<Vec<AtomicU32>> = Arc::new((0..m).map(|_| AtomicU32::new(0)).collect());
    let recv_times: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::with_capacity(n); m]));
    let all_in = Arc::new(Notify::new());
    let join_start = Instant::now();
    let sockets: Vec<Result<Ws, AnyError>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let args = args.clone();
            let topic = topic.clone();
            async move { connect_join(&args, i, &topic).await }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let join_wall = join_start.elapsed().as_secs_f64();
    let failed = sockets.iter().filter(|s| s.is_err()).count();
    let mut tasks = Vec::new();
    let joined = n - failed;
    for ws in sockets.into_iter().flatten() {
        let (counts, recv_times, all_in, event) = (counts.clone(), recv_times.clone(), all_in.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = ws;
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let now = Instant::now();
                let Ok((_, _, _, ev, payload)) = serde_json::from_str::<Parsed>(text.as_str()) else { continue };
                if ev != event {
                    continue;
                }
                // {"comment":{"content":"SEQ"}}
                let p = payload.get();
                let seq = p
                    .find("\"content\":\"")
                    .map(|i| &p[i + 11..])
                    .and_then(|s| s.split('"').next())
                    .and_then(|s| s.parse::<usize>().ok());
                let Some(seq) = seq.filter(|s| *s < counts.len()) else { continue };
                recv_times.lock().unwrap_or_else(|e| e.into_inner())[seq].push(now);
                if counts[seq].fetch_add(1, Ordering::Relaxed) + 1 == joined as u32 {
                    all_in.notify_one();
                }
            }
        }));
    }
    // The publisher: its own socket on the same topic (its own copies of the
    // broadcast are not counted).
    let mut publisher = connect_join(&args, n, &topic).await.expect("publisher joins");
    let before = sample(args.pid);
    let gen_before = self_cpu();
    let start = Instant::now();
    let mut push_times = Vec::with_capacity(m);
    let mut timeouts = 0;
    for seq in 0..m {
        let t = Instant::now();
        push_times.push(t);
        let r = format!("{}", seq + 2);
        let payload = format!("{{\"content\":\"{seq}\"}}");
        publisher.send(frame(Some("1"), &r, &topic, "comment:add", &payload)).await.expect("publish");
        if joined > 0 {
            let wait = async {
                while counts[seq].load(Ordering::Relaxed) < joined as u32 {
                    all_in.notified().await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
                timeouts += 1;
            }
        }
        // Drain the publisher's reply and own broadcast.
        let _ = await_reply(&mut publisher, &r).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let after = sample(args.pid);
    let gen_cpu = self_cpu() - gen_before;
    for t in &tasks {
        t.abort();
    }
    let times = recv_times.lock().unwrap_or_else(|e| e.into_inner());
    let delivered: usize = times.iter().map(Vec::len).sum();
    let mut last = Vec::new();
    let mut median = Vec::new();
    let mut delivering_s = 0.0;
    for (seq, ts) in times.iter().enumerate() {
        let mut lat: Vec<Duration> = ts.iter().map(|t| t.duration_since(push_times[seq])).collect();
        lat.sort_unstable();
        if let Some(l) = lat.last() {
            last.push(*l);
            delivering_s += l.as_secs_f64();
            median.push(lat[lat.len() / 2]);
        }
    }
    last.sort_unstable();
    median.sort_unstable();
    let expected = joined * m;
    let v = base(&args, "fanout", n, before, after, wall, delivered as u64);
    merge(
        v,
        json!({
            "messages": m,
            "subscribers": joined,
            "join_failed": failed,
            "join_wall_s": round(join_wall, 3),
            "delivered": delivered,
            "missing": expected - delivered.min(expected),
            "timeouts": timeouts,
            "deliveries_per_s": round(delivered as f64 / delivering_s.max(1e-9), 1),
            "last_delivery_ms_p50": round(percentile_us(&last, 50.0) / 1e3, 3),
            "last_delivery_ms_max": round(percentile_us(&last, 100.0) / 1e3, 3),
            "median_delivery_ms_p50": round(percentile_us(&median, 50.0) / 1e3, 3),
            "gen_cpu_s": round(gen_cpu, 3),
        }),
    )
}

// ---------------------------------------------------------------- rtt

/// Connects and joins `n` sockets; says on stderr how many failed and why.
async fn join_many(args: &Arc<Args>, n: usize) -> Vec<Ws> {
    let results: Vec<Result<Ws, AnyError>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let args = args.clone();
            async move { connect_join(&args, i, &format!("comments:{}", i % args.topics)).await }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        let failed = results.iter().filter(|r| r.is_err()).count();
        eprintln!("loadgen: {failed} of {n} sockets failed to connect and join; first error: {e}");
    }
    results.into_iter().flatten().collect()
}

/// Closed loop: each socket pings, waits for the reply, pings again.
async fn rtt_closed(args: Arc<Args>) -> (Value, f64) {
    let sockets = join_many(&args, args.sockets).await;
    let n = sockets.len();
    let duration = Duration::from_secs_f64(args.duration);
    let before = sample(args.pid);
    let gen_before = self_cpu();
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + duration);
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let topic = format!("comments:{}", i % args.topics);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut k = 2u64;
            while tokio::time::Instant::now() < deadline {
                let r = k.to_string();
                k += 1;
                let t = Instant::now();
                if ws.send(frame(Some("1"), &r, &topic, "ping", "{\"n\":1}")).await.is_err() {
                    break;
                }
                match await_reply(&mut ws, &r).await {
                    Ok(true) => lat.push(t.elapsed()),
                    _ => break,
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let wall = start.elapsed().as_secs_f64();
    let after = sample(args.pid);
    let gen_cpu = self_cpu() - gen_before;
    lat.sort_unstable();
    let replies = lat.len() as u64;
    let rate = replies as f64 / wall;
    let v = base(&args, "rtt_closed", n, before, after, wall, replies);
    let v = merge(v, latency_fields(&lat, rate, gen_cpu));
    (v, rate)
}

fn latency_fields(lat: &[Duration], rate: f64, gen_cpu: f64) -> Value {
    json!({
        "replies_per_s": round(rate, 1),
        "p50_us": round(percentile_us(lat, 50.0), 1),
        "p99_us": round(percentile_us(lat, 99.0), 1),
        "p999_us": round(percentile_us(lat, 99.9), 1),
        "max_us": round(percentile_us(lat, 100.0), 1),
        "gen_cpu_s": round(gen_cpu, 3),
    })
}

/// Open loop: every socket pings on its own schedule, `rate` pings/s in
/// total, whether or not earlier replies have arrived; latency is measured
/// from each send.
async fn rtt_open(args: Arc<Args>, rate: f64) -> Value {
    let sockets = join_many(&args, args.sockets).await;
    let n = sockets.len().max(1);
    let period = Duration::from_secs_f64(n as f64 / rate.max(1.0));
    let duration = Duration::from_secs_f64(args.duration);
    let sent = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let before = sample(args.pid);
    let gen_before = self_cpu();
    let start = Instant::now();
    let stop_sending = tokio::time::Instant::from_std(start + duration);
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let topic = format!("comments:{}", i % args.topics);
        let (sent, lost) = (sent.clone(), lost.clone());
        let offset = period.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::from_std(start + offset), period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pending: VecDeque<Instant> = VecDeque::new();
            let mut lat = Vec::with_capacity(4096);
            let mut k = 2u64;
            let drain_until = stop_sending + Duration::from_secs(2);
            loop {
                let sending = tokio::time::Instant::now() < stop_sending;
                if !sending && pending.is_empty() {
                    break;
                }
                tokio::select! {
                    _ = ticks.tick(), if sending => {
                        let r = k.to_string();
                        k += 1;
                        pending.push_back(Instant::now());
                        sent.fetch_add(1, Ordering::Relaxed);
                        if sink.send(frame(Some("1"), &r, &topic, "ping", "{\"n\":1}")).await.is_err() {
                            break;
                        }
                    }
                    msg = stream.next() => {
                        let Some(Ok(Message::Text(text))) = msg else { break };
                        if let Ok((_, Some(_), _, "phx_reply", _)) = serde_json::from_str::<Parsed>(text.as_str()) {
                            // Replies on one channel come in order.
                            if let Some(t) = pending.pop_front() {
                                lat.push(t.elapsed());
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(drain_until), if !sending => break,
                }
            }
            lost.fetch_add(pending.len(), Ordering::Relaxed);
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap_or_default());
    }
    let wall = start.elapsed().as_secs_f64();
    let after = sample(args.pid);
    let gen_cpu = self_cpu() - gen_before;
    lat.sort_unstable();
    let replies = lat.len() as u64;
    let v = base(&args, "rtt_open", n, before, after, wall, replies);
    let v = merge(v, latency_fields(&lat, replies as f64 / duration.as_secs_f64(), gen_cpu));
    merge(
        v,
        json!({
            "target_rate": round(rate, 1),
            "sent": sent.load(Ordering::Relaxed),
            "unanswered": lost.load(Ordering::Relaxed),
        }),
    )
}

// ---------------------------------------------------------------- churn

async fn churn_cycle(args: &Args, idx: usize) -> Result<(), AnyError> {
    let topic = format!("comments:{}", idx % args.topics);
    let mut ws = connect_join(args, idx, &topic).await?;
    ws.send(frame(Some("1"), "2", &topic, "phx_leave", "{}")).await?;
    await_reply(&mut ws, "2").await?;
    ws.close(None).await?;
    // Wait for the server's close (or EOF), so the cycle is complete.
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

async fn churn(args: Arc<Args>) -> Value {
    let duration = Duration::from_secs_f64(args.duration);
    let counter = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(String::new()));
    let before = sample(args.pid);
    let gen_before = self_cpu();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (args, counter, done, failed, first_error) =
            (args.clone(), counter.clone(), done.clone(), failed.clone(), first_error.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let idx = counter.fetch_add(1, Ordering::Relaxed);
                match tokio::time::timeout(Duration::from_secs(10), churn_cycle(&args, idx)).await {
                    Ok(Ok(())) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(e)) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        if first.is_empty() {
                            *first = e.to_string();
                        }
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // RSS every second, to show it stays flat.
    let pid = args.pid;
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            samples.push(bench::rss_bytes(pid));
            if Instant::now() >= deadline {
                break samples;
            }
        }
    });
    for t in tasks {
        let _ = t.await;
    }
    let wall = start.elapsed().as_secs_f64();
    let after = sample(args.pid);
    let gen_cpu = self_cpu() - gen_before;
    let samples = sampler.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let settled = bench::rss_bytes(args.pid);
    let cycles = done.load(Ordering::Relaxed);
    let quarter = samples.get(samples.len() / 4).copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let v = base(&args, "churn", args.concurrency, before, after, wall, cycles);
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    merge(
        v,
        json!({
            "joins_per_s": round(cycles as f64 / wall, 1),
            "failed": failed.load(Ordering::Relaxed),
            "first_error": first_error,
            "rss_mib_samples": samples.iter().map(|r| round(*r as f64 / 1048576.0, 1)).collect::<Vec<_>>(),
            "rss_growth_after_first_quarter": last as i64 - quarter as i64,
            "rss_settled": settled,
            "gen_cpu_s": round(gen_cpu, 3),
        }),
    )
}

fn main() {
    raise_nofile();
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Some((i, k)) = args.child {
        rt.block_on(idle_child(Arc::new(args), i, k));
        return;
    }
    let args = Arc::new(args);
    let lines: Vec<Value> = match args.scenario.as_str() {
        "idle" => vec![idle_parent(&args)],
        "fanout" => vec![rt.block_on(fanout(args.clone()))],
        "rtt" if args.rate > 0.0 => vec![rt.block_on(rtt_open(args.clone(), args.rate))],
        "rtt" => {
            let (closed, peak) = rt.block_on(rtt_closed(args.clone()));
            // Let the closed-loop sockets go before the open-loop run.
            std::thread::sleep(Duration::from_secs(1));
            let open = rt.block_on(rtt_open(args.clone(), peak / 2.0));
            vec![closed, open]
        }
        "churn" => vec![rt.block_on(churn(args.clone()))],
        _ => usage(),
    };
    for line in lines {
        println!("{line}");
    }
}
