//! Micro-benchmarks of the wire protocol, topic routing and broadcast
//! encoding and fanout, with heap allocations per iteration counted by a
//! counting global allocator (printed as `allocs/iter NAME: A allocs, B bytes`).
//!
//! ```text
//! cargo bench -p bench --bench protocol -- --warm-up-time 1 --measurement-time 3
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use phx_channels_runtime::outbox::Outbox;
use phx_channels_runtime::protocol::{Frame, Outgoing, Payload, Serializer};
use phx_channels_runtime::pubsub::{History, PubSub};
use phx_channels_runtime::router::{route, TopicPattern};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` many times and prints its allocations per call, then benches it.
fn bench<R>(c: &mut Criterion, name: &str, mut f: impl FnMut() -> R) {
    const N: u64 = 10_000;
    black_box(f());
    let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    for _ in 0..N {
        black_box(f());
    }
    let (a1, b1) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    println!("allocs/iter {name}: {:.2} allocs, {:.0} bytes", (a1 - a0) as f64 / N as f64, (b1 - b0) as f64 / N as f64);
    c.bench_function(name, |b| b.iter(&mut f));
}

const BODY_100: &str =
    r#"{"body":"The quick brown fox jumps over the lazy dog; the quick brown fox jumps over the lazy dog!"}"#;

fn v1_text(event: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"topic":"comments:42","event":"{event}","payload":{payload},"ref":"7","join_ref":"3"}}"#).into_bytes()
}

fn v2_text(event: &str, payload: &str) -> Vec<u8> {
    format!(r#"["3","7","comments:42","{event}",{payload}]"#).into_bytes()
}

fn v2_binary(event: &str, payload: &[u8]) -> Vec<u8> {
    let (jr, r, topic) = ("3", "7", "comments:42");
    let mut out = vec![0u8, jr.len() as u8, r.len() as u8, topic.len() as u8, event.len() as u8];
    for field in [jr, r, topic, event] {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn decode(c: &mut Criterion) {
    let join_v1 = v1_text("phx_join", r#"{"token":"abc"}"#);
    let join_v2 = v2_text("phx_join", r#"{"token":"abc"}"#);
    let push_v1 = v1_text("comment:add", BODY_100);
    let push_v2 = v2_text("comment:add", BODY_100);
    let push_bin = v2_binary("comment:add", BODY_100.as_bytes());
    assert_eq!(BODY_100.len(), 100);
    bench(c, "decode/v1/join", || Serializer::V1.decode_text(&join_v1).unwrap());
    bench(c, "decode/v2/join", || Serializer::V2.decode_text(&join_v2).unwrap());
    bench(c, "decode/v1/push_100B", || Serializer::V1.decode_text(&push_v1).unwrap());
    bench(c, "decode/v2/push_100B", || Serializer::V2.decode_text(&push_v2).unwrap());
    bench(c, "decode/v2_binary/push_100B", || Serializer::V2.decode_binary(&push_bin).unwrap());
}

fn encode(c: &mut Criterion) {
    let join_response = Payload::json(&serde_json::json!({"hey": "there", "comments": []})).unwrap();
    let body: Payload = Payload::Json(serde_json::value::RawValue::from_string(BODY_100.to_owned()).unwrap());
    let binary = Payload::from(Bytes::from_static(BODY_100.as_bytes()));
    for ser in [Serializer::V1, Serializer::V2] {
        let tag = if ser == Serializer::V1 { "v1" } else { "v2" };
        let reply = Outgoing::Reply {
            join_ref: Some("3"),
            msg_ref: Some("7"),
            topic: "comments:42",
            status: "ok",
            response: &join_response,
        };
        bench(c, &format!("encode/{tag}/join_reply"), || ser.encode(&reply).unwrap());
        let push = Outgoing::Push {
            join_ref: Some("3"),
            topic: "comments:42",
            event: "comment:new",
            payload: &body,
            position: None,
        };
        bench(c, &format!("encode/{tag}/push_100B"), || ser.encode(&push).unwrap());
        let bcast =
            Outgoing::Broadcast { topic: "comments:42", event: "comments:42:new", payload: &body, position: None };
        bench(c, &format!("encode/{tag}/broadcast_100B"), || ser.encode(&bcast).unwrap());
    }
    let bin = Outgoing::Broadcast { topic: "comments:42", event: "comments:42:new", payload: &binary, position: None };
    bench(c, "encode/v2_binary/broadcast_100B", || Serializer::V2.encode(&bin).unwrap());
}

fn routing(c: &mut Criterion) {
    for n in [1usize, 10, 100] {
        // Routes "t0:*" .. "t{n-1}:*"; the topic matches the last one (the
        // worst case of a first-match scan), and a topic matching none.
        let routes: Vec<(TopicPattern, usize)> = (0..n)
            .map(|i| {
                let text: &'static str = Box::leak(format!("t{i}:*").into_boxed_str());
                (TopicPattern::new(text), i)
            })
            .collect();
        let last = format!("t{}:12345", n - 1);
        bench(c, &format!("route/{n}_routes/last_match"), || route(&routes, black_box(&last)).map(|r| r.1));
        bench(c, &format!("route/{n}_routes/no_match"), || route(&routes, black_box("nope:1")).map(|r| r.1));
    }
}

fn broadcast(c: &mut Criterion) {
    let comment = serde_json::json!({"comment": {"content": "a comment of some thirty bytes."}});
    // What `socket.broadcast` does before delivery: the payload to JSON once.
    bench(c, "broadcast/payload_json", || Payload::json(&comment).unwrap());
    let payload = Payload::json(&comment).unwrap();
    let out = Outgoing::Broadcast { topic: "comments:42", event: "comments:42:new", payload: &payload, position: None };
    bench(c, "broadcast/encode_v2_once", || Serializer::V2.encode(&out).unwrap());
    // Encoded once, shared by 1 000 subscribers: one encode plus 1 000
    // reference-counted clones (what the fastlane hands each outbox).
    let mut frames: Vec<Frame> = Vec::with_capacity(1000);
    bench(c, "broadcast/encode_once_clone_1000", || {
        frames.clear();
        let frame = Serializer::V2.encode(&out).unwrap();
        for _ in 0..1000 {
            frames.push(frame.clone());
        }
        frames.len()
    });
    // PubSub::subscribe is crate-private: a broadcast to a topic with no
    // subscriber measures the payload encoding, shard lookup and adapter.
    let pubsub = PubSub::local();
    bench(c, "broadcast/pubsub_no_subscribers", || pubsub.broadcast("comments:42", "comments:42:new", &comment));
}

/// One broadcast to N V2 subscribers of a PubSub, each outbox then taken
/// as its writer would: the payload is encoded once and the N outboxes get
/// the same bytes, so allocations per broadcast are one encode plus one
/// queue per subscriber (an outbox hands its queue to the writer, so the
/// next frame allocates a new one), whatever the payload's size.
fn fanout(c: &mut Criterion) {
    const UPDATE: usize = 64 * 1024;
    let binary = Payload::from(Bytes::from((0..UPDATE).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>()));
    // As a handler receives it: a relayed JSON payload is not re-serialized either.
    let json = Payload::json(&serde_json::json!({"comment": {"content": "a comment of some thirty bytes."}})).unwrap();
    for n in [1usize, 100, 1000] {
        let pubsub = PubSub::local();
        let outboxes: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(1 << 24))).collect();
        for outbox in &outboxes {
            pubsub.subscribe_outbox("doc:1", outbox.clone(), Serializer::V2);
        }
        let delivered =
            |outboxes: &[Arc<Outbox>]| outboxes.iter().map(|o| o.take().map_or(0, |q| q.len())).sum::<usize>();
        for (what, payload) in [("binary_64KiB", &binary), ("json_60B", &json)] {
            let name = format!("fanout/{what}/{n}_subscribers");
            let run = || {
                pubsub.broadcast("doc:1", "update", payload).unwrap();
                delivered(&outboxes)
            };
            assert_eq!(run(), n, "every subscriber gets the broadcast");
            const ITERS: u64 = 1_000;
            let (a0, b0) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
            let started = Instant::now();
            for _ in 0..ITERS {
                black_box(run());
            }
            let elapsed = started.elapsed();
            let (a1, b1) = (ALLOCS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
            let allocs = (a1 - a0) as f64 / ITERS as f64;
            let bytes = (b1 - b0) as f64 / ITERS as f64;
            println!(
                "allocs/iter {name}: {allocs:.2} allocs ({:.3} per subscriber), {bytes:.0} bytes ({:.0} per subscriber), {:.0} ns per delivery",
                allocs / n as f64,
                bytes / n as f64,
                elapsed.as_nanos() as f64 / (ITERS as usize * n) as f64,
            );
            let mut group = c.benchmark_group("fanout");
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(format!("{what}/{n}_subscribers"), |b| b.iter(run));
            group.finish();
        }
    }
}

/// A broadcast on a topic with history (in memory: appended to the topic's
/// stream, delivered under its lock) against the same broadcast without,
/// to N V2 subscribers that do not ask for positions, measured alternately
/// in one run: `history/ratio` lines give ns per broadcast and the ratio
/// (history / none). With history off the path is the fanout above.
fn history(c: &mut Criterion) {
    let json = Payload::json(&serde_json::json!({"comment": {"content": "a comment of some thirty bytes."}})).unwrap();
    for n in [1usize, 100] {
        let make = |kept: bool| {
            let pubsub = PubSub::local();
            if kept {
                pubsub.keep_history("doc:*", History::new(100, std::time::Duration::from_secs(300)));
            }
            let outboxes: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(1 << 24))).collect();
            for outbox in &outboxes {
                pubsub.subscribe_outbox("doc:1", outbox.clone(), Serializer::V2);
            }
            (pubsub, outboxes)
        };
        let (none, kept) = (make(false), make(true));
        let run = |(pubsub, outboxes): &(PubSub, Vec<Arc<Outbox>>)| {
            pubsub.broadcast("doc:1", "update", &json).unwrap();
            outboxes.iter().map(|o| o.take().map_or(0, |q| q.len())).sum::<usize>()
        };
        assert_eq!((run(&none), run(&kept)), (n, n), "every subscriber gets the broadcast");
        const ITERS: u32 = 5_000;
        let (mut t_none, mut t_kept) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for _ in 0..10 {
            let started = Instant::now();
            for _ in 0..ITERS {
                black_box(run(&none));
            }
            t_none += started.elapsed();
            let started = Instant::now();
            for _ in 0..ITERS {
                black_box(run(&kept));
            }
            t_kept += started.elapsed();
        }
        let per = |t: std::time::Duration| t.as_nanos() as f64 / f64::from(ITERS * 10);
        println!(
            "history/ratio json_60B/{n}_subscribers: {:.0} ns per broadcast with history, {:.0} ns without: {:.2}x",
            per(t_kept),
            per(t_none),
            per(t_kept) / per(t_none)
        );
        let mut group = c.benchmark_group("history");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("none/json_60B/{n}_subscribers"), |b| b.iter(|| run(&none)));
        group.bench_function(format!("memory/json_60B/{n}_subscribers"), |b| b.iter(|| run(&kept)));
        group.finish();
    }
}

criterion_group!(benches, decode, encode, routing, broadcast, fanout, history);
criterion_main!(benches);
