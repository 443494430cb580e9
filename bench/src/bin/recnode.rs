//! `recnode`: the node the history benchmarks (`bench/recovery.sh`) drive.
//! One channel, `comments:*`, that answers the same V2 frames as `discuss`
//! and the `floor` server (`comment:add` `{"content": c}` broadcasts
//! `comments:N:new` `{"comment": {"content": c}}` and replies ok; `ping`
//! echoes), without `discuss`'s database, so that what is measured is the
//! runtime: the same broadcast with history off, in memory, or at a broker.
//!
//! ```text
//! recnode [--port N] [--history off|on] [--size 100] [--age-s 300] [--backlog 1024]
//! REDIS_URL=redis://… | REDIS_CLUSTER_URLS=redis://…,… | NATS_URL=nats://…  recnode --history on
//! ```
//!
//! `--history on` keeps `comments:*` (`PubSub::keep_history`, 100 broadcasts
//! for 5 minutes by default): in memory on one node, in Redis Streams or
//! JetStream when a broker is named. Built without the `history` feature
//! (as it is against `main`, which has no history) only `--history off`
//! exists. Prints `listening on http://127.0.0.1:PORT` once it listens.

use phx_channels::prelude::*;
use phx_channels::pubsub::{Nats, Redis, RedisCluster};
use phx_channels::{ServerOptions, SocketOptions};

socket! {
    /// Every client is welcome: the benchmarks measure channels, not sign-in.
    pub BenchSocket {
        channel "comments:*" => Comments;
    }
}

impl Connect for BenchSocket {
    type State = ();
    type Assigns = ();
    async fn connect(_params: &Params, _info: &ConnectInfo, _state: &()) -> Result<(), Refuse> {
        Ok(())
    }
}

/// `comments:N`: broadcasts `comments:N:new` on `comment:add`.
pub struct Comments {
    event: String,
}

#[channel(socket = BenchSocket)]
impl Comments {
    async fn join(topic: Topic, _params: Value) -> Join<Self> {
        Ok((json!({}), Comments { event: format!("{}:new", topic.as_str()) }))
    }

    #[handle_in("comment:add")]
    async fn add(&mut self, comment: Value, socket: &mut Socket<BenchSocket>) -> Result<Reply, BroadcastError> {
        socket.broadcast(&self.event, json!({ "comment": comment }))?;
        Ok(Reply::ok(json!({})))
    }

    #[handle_in("ping")]
    async fn ping(&mut self, payload: Payload) -> Reply {
        Reply::ok(payload)
    }
}

/// The value after `--name` on the command line.
fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn pubsub() -> Result<PubSub, Box<dyn std::error::Error>> {
    Ok(match (env("REDIS_URL"), env("REDIS_CLUSTER_URLS"), env("NATS_URL")) {
        (None, None, None) => PubSub::local(),
        (Some(url), None, None) => PubSub::with_adapter(Redis::new(&url)?),
        (None, Some(urls), None) => {
            let seeds: Vec<&str> = urls.split(',').collect();
            PubSub::with_adapter(RedisCluster::new(&seeds)?)
        }
        (None, None, Some(url)) => PubSub::with_adapter(Nats::new(&url)?),
        _ => return Err("set one of REDIS_URL, REDIS_CLUSTER_URLS and NATS_URL".into()),
    })
}

#[cfg(feature = "history")]
fn keep(pubsub: &PubSub, on: bool) -> Result<(), Box<dyn std::error::Error>> {
    use phx_channels::pubsub::History;
    use std::time::Duration;
    if on {
        let size: usize = arg("--size").map_or(Ok(100), |s| s.parse())?;
        let age: u64 = arg("--age-s").map_or(Ok(300), |s| s.parse())?;
        pubsub.keep_history("comments:*", History::new(size, Duration::from_secs(age)));
    }
    Ok(())
}

#[cfg(not(feature = "history"))]
fn keep(_pubsub: &PubSub, on: bool) -> Result<(), Box<dyn std::error::Error>> {
    if on {
        return Err("built without the history feature: --history off only".into());
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = arg("--port").map_or(Ok(0), |p| p.parse())?;
    let history = match arg("--history").as_deref() {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => return Err(format!("--history {other}: off or on").into()),
    };
    phx_channels::server::raise_fd_limit()?;
    let pubsub = pubsub()?;
    keep(&pubsub, history)?;
    // Unlimited: one publisher socket pushes as fast as it is answered.
    let options = SocketOptions {
        max_broadcasts_per_second: 0,
        max_broadcast_bytes_per_second: 0,
        max_topic_broadcast_bytes_per_second: 0,
        ..SocketOptions::default()
    };
    // The generator spreads its sockets over 254 source addresses.
    let server = ServerOptions { max_connections_per_source: 0, ..ServerOptions::default() };
    let endpoint =
        Endpoint::new().with_pubsub(pubsub).socket_with("/socket", BenchSocket, options).server_options(server);
    // tokio's default backlog (1024) unless --backlog N (the storm).
    let backlog: u32 = arg("--backlog").map_or(Ok(1024), |b| b.parse())?;
    let listener = bench::listen(std::net::SocketAddr::from(([127, 0, 0, 1], port)), backlog)?;
    println!("listening on http://{}", listener.local_addr()?);
    endpoint.serve_on(listener).await?;
    Ok(())
}
