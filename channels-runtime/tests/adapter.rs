//! The [`Adapter`] trait is all a broker needs: an in-memory "broker" written
//! here, as a third-party crate would write one, carries broadcasts,
//! `broadcast_from`, socket-id disconnects and presence between two nodes
//! in one process.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use phx_channels_runtime::endpoint::Endpoint;
use phx_channels_runtime::presence::{Presence, PresenceOptions};
use phx_channels_runtime::pubsub::{Adapter, BroadcastError, BroadcastMessage, PubSub, PublishError};
use phx_channels_runtime::SocketOptions;
use serde_json::json;
use support::{eventually, serve_with, Server};
use tokio::sync::mpsc;

/// A node's inbox on the bus.
type Inbox = mpsc::UnboundedSender<BroadcastMessage>;

/// The broker: every node's inbox.
#[derive(Clone, Default)]
struct Bus(Arc<Mutex<Vec<(usize, Inbox)>>>);

/// One node's side of the bus.
struct Memory {
    bus: Bus,
    node: usize,
    inbox: Mutex<Option<mpsc::UnboundedReceiver<BroadcastMessage>>>,
}

impl Memory {
    fn join(bus: &Bus) -> Self {
        let (sender, inbox) = mpsc::unbounded_channel();
        let mut nodes = bus.0.lock().unwrap();
        let node = nodes.len();
        nodes.push((node, sender));
        Memory { bus: bus.clone(), node, inbox: Mutex::new(Some(inbox)) }
    }
}

impl Adapter for Memory {
    fn publish(&self, message: &BroadcastMessage) -> Result<(), PublishError> {
        // Never back to this node: its subscribers already have it.
        for (node, inbox) in self.bus.0.lock().unwrap().iter() {
            if *node != self.node {
                let _ = inbox.send(message.clone());
            }
        }
        Ok(())
    }

    fn start(&self, local: PubSub) {
        let Some(mut inbox) = self.inbox.lock().unwrap().take() else { return };
        // A weak handle: the delivery task ends with the PubSub.
        let local = local.downgrade();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                let Some(pubsub) = local.upgrade() else { return };
                pubsub.deliver_local(&message);
            }
        });
    }
}

async fn node(bus: &Bus) -> Server {
    let pubsub = PubSub::with_adapter(Memory::join(bus));
    let presence = PresenceOptions {
        heartbeat_interval: Duration::from_millis(100),
        down_period: Duration::from_secs(2),
        ..PresenceOptions::default()
    };
    assert!(Presence::start(&pubsub, presence));
    serve_with(Endpoint::new().with_pubsub(pubsub), SocketOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_once_and_broadcast_from_skips_only_the_sender() {
    let bus = Bus::default();
    let (a, b) = (node(&bus).await, node(&bus).await);
    let (mut on_a, mut on_b) = (a.v2().await, b.v2().await);
    on_a.join("1", "echo:x").await;
    on_b.join("1", "echo:x").await;
    on_a.send(json!(["1", "2", "echo:x", "shout", {"from": "a"}])).await;
    let expected = json!([null, null, "echo:x", "shout", {"from": "a"}]);
    assert_eq!(on_a.json().await, expected);
    assert_eq!(on_a.json().await[3], "phx_reply");
    assert_eq!(on_b.json().await, expected);
    on_b.send(json!(["1", "3", "echo:x", "shout_from", {}])).await;
    assert_eq!(on_b.json().await[3], "phx_reply");
    assert_eq!(on_a.json().await, json!([null, null, "echo:x", "shout", {"from": "other"}]));
    // Never twice, never echoed.
    on_a.silent(200).await;
    on_b.silent(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_reaches_the_socket_on_the_other_node() {
    let bus = Bus::default();
    let (a, b) = (node(&bus).await, node(&bus).await);
    let mut on_b = b.connect("vsn=2.0.0&user_id=u1").await;
    on_b.send(json!([null, "hb", "phoenix", "heartbeat", {}])).await;
    assert_eq!(on_b.json().await[1], "hb");
    a.endpoint.broadcast("users_socket:u1", "disconnect", json!({})).unwrap();
    assert_eq!(on_b.close_code().await, Some(1001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_replicates_through_the_adapter_and_leaves_with_its_channel() {
    let bus = Bus::default();
    let (a, b) = (node(&bus).await, node(&bus).await);
    let mut on_a = a.v2().await;
    on_a.join("1", "echo:room").await;
    on_a.send(json!(["1", "2", "echo:room", "track", "ada"])).await;
    let pubsub_b = b.endpoint.pubsub().clone();
    eventually("ada listed on b", || Presence::list_topic(&pubsub_b, "echo:room")["ada"].is_object()).await;
    on_a.send(json!(["1", "3", "echo:room", "phx_leave", {}])).await;
    eventually("ada gone from b", || Presence::list_topic(&pubsub_b, "echo:room").get("ada").is_none()).await;
}

/// A broker that is up but cannot keep up: it refuses every broadcast.
struct Saturated;

impl Adapter for Saturated {
    fn publish(&self, _message: &BroadcastMessage) -> Result<(), PublishError> {
        Err(PublishError::Busy)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_broker_pushes_back_before_anyone_gets_the_broadcast() {
    let pubsub = PubSub::with_adapter(Saturated);
    let server = serve_with(Endpoint::new().with_pubsub(pubsub), SocketOptions::default()).await;
    let (mut sender, mut listener) = (server.v2().await, server.v2().await);
    sender.join("1", "echo:busy").await;
    listener.join("1", "echo:busy").await;
    sender.send(json!(["1", "2", "echo:busy", "shout", {"n": 1}])).await;
    // The sender is told, and nobody (here or elsewhere) got it.
    assert_eq!(
        sender.json().await,
        json!(["1", "2", "echo:busy", "phx_reply", {"status": "error", "response": {"reason": "broker busy"}}])
    );
    listener.silent(200).await;
    assert!(matches!(server.endpoint.broadcast("echo:busy", "e", json!({})), Err(BroadcastError::BrokerBusy)));
    // The channel keeps running.
    sender.send(json!(["1", "3", "echo:busy", "push", {}])).await;
    assert_eq!(sender.json().await[3], "pushed");
}
