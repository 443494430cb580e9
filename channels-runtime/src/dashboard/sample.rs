//! What one node reports to a dashboard: a [`Sample`] of its totals, made
//! when asked, and the [`Rates`] a watcher derives from two samples of the
//! same node. Other nodes are asked over the PubSub ([`answer_asks`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::metrics::{Metrics, MetricsSnapshot};
use crate::outbox::ConnId;
use crate::presence::{Presence, GOSSIP_TOPIC};
use crate::protocol::{Frame, Payload, Serializer};
use crate::pubsub::{PubSub, Sink, Subscriber, WeakPubSub};

/// The prefix of every topic the dashboard uses: a watcher's own topic
/// (`phx_dashboard:<id>`, where other nodes answer it) and [`ASK_TOPIC`].
pub(crate) const TOPIC_PREFIX: &str = "phx_dashboard";
/// Where a watcher asks every other node for a sample.
pub(crate) const ASK_TOPIC: &str = "phx_dashboard_ask";
const ASK_EVENT: &str = "ask";
/// The event a sample travels as: from another node to a watcher's topic,
/// and from a watcher to its page (with rates).
pub(crate) const ROW_EVENT: &str = "row";
/// Topics a sample lists, largest first.
const LARGEST_TOPICS: usize = 8;
/// The name of a node whose presence has not started (a single node that
/// tracks nothing): there is no other node to tell it from.
const UNNAMED_NODE: &str = "local";

/// Samples one node: its endpoint's counters, its topics and presences.
/// Shared by the node's watchers and by the answers to other nodes' asks.
pub(crate) struct Sampler {
    metrics: Arc<Metrics>,
    /// The clock of this node's samples: rates are taken on the clock of
    /// the node that counted, never across two machines' clocks.
    started: Instant,
}

impl Sampler {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Sampler { metrics, started: Instant::now() }
    }

    /// This node, now.
    pub(crate) fn sample(&self, pubsub: &PubSub) -> Sample {
        // A snapshot is a struct of counters: as a map it carries whatever
        // counters the endpoint keeps, without this module listing them.
        let metrics = match serde_json::to_value(self.metrics.snapshot(pubsub.fanout())) {
            Ok(serde_json::Value::Object(fields)) => {
                fields.into_iter().filter_map(|(name, value)| Some((name, value.as_u64()?))).collect()
            }
            _ => BTreeMap::new(),
        };
        let presence = Presence::stats(pubsub);
        Sample {
            node: presence.as_ref().map_or_else(|| UNNAMED_NODE.to_owned(), |p| p.node.clone()),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            metrics,
            presences: presence.map_or(0, |p| p.tracked_here as u64),
            topics: pubsub
                .largest_topics(LARGEST_TOPICS, |topic| !topic.starts_with(TOPIC_PREFIX) && topic != GOSSIP_TOPIC)
                .into_iter()
                .map(|(topic, count)| (clip_topic(topic), count))
                .collect(),
            broker: pubsub.broker_stats().and_then(|stats| serde_json::to_value(stats).ok()),
        }
    }
}

/// How much of a topic a row shows: topics are as long as the app lets
/// them be, and eight of 1.1 MB made a row too large for the watcher's
/// outbound queue.
const TOPIC_SHOWN: usize = 96;

/// `topic`, cut to [`TOPIC_SHOWN`] bytes (on a char boundary) and marked
/// `…` when cut.
fn clip_topic(mut topic: String) -> String {
    if topic.len() > TOPIC_SHOWN {
        let mut end = TOPIC_SHOWN;
        while !topic.is_char_boundary(end) {
            end -= 1;
        }
        topic.truncate(end);
        topic.push('…');
    }
    topic
}

/// One node's figures at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sample {
    /// The node's presence name.
    pub(crate) node: String,
    /// Milliseconds since the node's sampler started.
    uptime_ms: u64,
    /// The endpoint's counters ([`MetricsSnapshot`](crate::MetricsSnapshot)):
    /// Current values ([`MetricsSnapshot::is_current`]) and totals.
    metrics: BTreeMap<String, u64>,
    /// Presences tracked on the node.
    presences: u64,
    /// The node's largest topics by local subscribers: `[topic, count]`.
    topics: Vec<(String, usize)>,
    /// The broker adapter's counters ([`BrokerStats`](crate::pubsub::BrokerStats)),
    /// `null` on a single node.
    broker: Option<serde_json::Value>,
}

/// A sample as a page receives it: with the per-second rates of its
/// totals since the node's previous sample (`null` for the first), and
/// whether it is of the node the page watches from (a node's name may
/// change under a page: presence starting names it).
#[derive(Debug, Serialize)]
pub(crate) struct Row<'a> {
    #[serde(flatten)]
    sample: &'a Sample,
    rates: Option<BTreeMap<&'a str, f64>>,
    here: bool,
}

/// A watcher's previous sample of each node, to turn totals into rates.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    previous: HashMap<String, Sample>,
}

/// Nodes a watcher remembers; past it (nodes come and go under fresh
/// random names) it starts over rather than grow.
const MAX_NODES: usize = 1024;

impl Rates {
    /// The row of `sample` (of this node when `here`), and it kept as its
    /// node's previous one.
    pub(crate) fn row(&mut self, sample: Sample, here: bool) -> Result<Payload, serde_json::Error> {
        let rates = self.previous.get(&sample.node).and_then(|before| rates(before, &sample));
        let row = Row { sample: &sample, rates, here };
        let payload = Payload::json(&row);
        if self.previous.len() >= MAX_NODES && !self.previous.contains_key(&sample.node) {
            self.previous.clear();
        }
        self.previous.insert(sample.node.clone(), sample);
        payload
    }
}

/// Per second, from `before` to `now` of the same node; `None` when the
/// node restarted in between (its clock went back) or no time passed.
fn rates<'a>(before: &Sample, now: &'a Sample) -> Option<BTreeMap<&'a str, f64>> {
    let elapsed_ms = now.uptime_ms.checked_sub(before.uptime_ms).filter(|&ms| ms > 0)?;
    // Precision is not the point of a rate on a chart.
    #[allow(clippy::cast_precision_loss)]
    let per_second = |delta: u64| delta as f64 * 1000.0 / elapsed_ms as f64;
    now.metrics
        .iter()
        .filter(|(name, _)| !MetricsSnapshot::is_current(name))
        .map(|(name, &total)| {
            let delta = total.checked_sub(before.metrics.get(name).copied().unwrap_or(0))?;
            Some((name.as_str(), per_second(delta)))
        })
        .collect()
}

/// What a watcher asks the other nodes: answer on this topic.
#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    reply: String,
}

/// Asks every other node for a sample, answered on `reply` (the watcher's
/// own topic). Nothing to ask on a single node.
pub(crate) fn ask(pubsub: &PubSub, reply: &str) {
    if !pubsub.is_multi_node() {
        return;
    }
    let sent = Payload::json(&Ask { reply: reply.to_owned() })
        .map_err(|error| error.to_string())
        .and_then(|payload| pubsub.publish_remote(ASK_TOPIC, ASK_EVENT, payload).map_err(|error| error.to_string()));
    if let Err(error) = sent {
        // The next tick asks again.
        tracing::debug!(%error, "dashboard: other nodes not asked this tick");
    }
}

/// Marks a PubSub whose node answers asks (one subscription per PubSub).
struct Answering;

/// Makes this node answer the asks of other nodes' watchers, once per
/// PubSub: one subscription, and nothing else until an ask comes (then a
/// short task samples the node and publishes the answer). Nothing on a
/// single node.
pub(crate) fn answer_asks(pubsub: &PubSub, sampler: &Arc<Sampler>) {
    if !pubsub.is_multi_node() {
        return;
    }
    pubsub.service(|pubsub| {
        let answers = Answers { sampler: sampler.clone(), pubsub: pubsub.downgrade() };
        pubsub.subscribe(ASK_TOPIC, Subscriber::new(ConnId::unique(), Serializer::V2, Arc::new(answers)).raw());
        Arc::new(Answering)
    });
}

/// The sink of asks: answers each from a task of its own (never under the
/// PubSub's lock, which sampling the topics takes).
struct Answers {
    sampler: Arc<Sampler>,
    /// Weak: the subscription lives in the PubSub it would keep alive.
    pubsub: WeakPubSub,
}

impl Sink for Answers {
    fn frame(&self, _frame: &Frame) {}

    fn raw(&self, _tag: u64, _topic: &str, _event: &str, payload: &Payload) {
        let reply = match payload.decode::<Ask>() {
            // Answers go to watchers' topics only, whoever asks.
            Ok(Ask { reply }) if is_watcher_topic(&reply) => reply,
            Ok(Ask { reply }) => {
                tracing::warn!(reply = %crate::logging::clip(&reply), "dashboard ask for a topic that is no watcher's; ignored");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "malformed dashboard ask ignored");
                return;
            }
        };
        let (Some(pubsub), Ok(runtime)) = (self.pubsub.upgrade(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let sampler = self.sampler.clone();
        runtime.spawn(async move {
            let answered =
                Payload::json(&sampler.sample(&pubsub)).map_err(|error| error.to_string()).and_then(|payload| {
                    pubsub.publish_remote(&reply, ROW_EVENT, payload).map_err(|error| error.to_string())
                });
            if let Err(error) = answered {
                tracing::debug!(%error, "dashboard ask not answered");
            }
        });
    }
}

/// The longest id a watcher's topic may carry.
const MAX_WATCHER_ID: usize = 64;

/// Whether `topic` is a watcher's: `phx_dashboard:` and a short id of
/// letters, digits, `-` and `_`.
pub(crate) fn is_watcher_topic(topic: &str) -> bool {
    topic.strip_prefix(TOPIC_PREFIX).and_then(|rest| rest.strip_prefix(':')).is_some_and(|id| {
        !id.is_empty()
            && id.len() <= MAX_WATCHER_ID
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, uptime_ms: u64, joins: u64, open: u64) -> Sample {
        Sample {
            node: node.to_owned(),
            uptime_ms,
            metrics: [("joins".to_owned(), joins), ("connections_open".to_owned(), open)].into_iter().collect(),
            presences: 0,
            topics: Vec::new(),
            broker: None,
        }
    }

    #[test]
    fn rates_are_per_second_of_the_sampled_nodes_clock() {
        let now = sample("a", 3000, 30, 9);
        let r = rates(&sample("a", 1000, 10, 5), &now).unwrap();
        assert_eq!(r.get("joins"), Some(&10.0));
        assert_eq!(r.get("connections_open"), None, "current values have no rate");
        assert!(rates(&sample("a", 3000, 30, 0), &sample("a", 1000, 40, 0)).is_none(), "restarted");
        assert!(rates(&sample("a", 1000, 30, 0), &sample("a", 2000, 20, 0)).is_none(), "counter went back");
        assert!(rates(&sample("a", 1000, 1, 0), &sample("a", 1000, 1, 0)).is_none(), "no time passed");
        // A current value that went down is no restart.
        let mut drained = sample("a", 3000, 30, 9);
        drained.metrics.insert("outbound_queued_bytes".to_owned(), 0);
        let mut backlog = sample("a", 1000, 10, 5);
        backlog.metrics.insert("outbound_queued_bytes".to_owned(), 65_536);
        assert_eq!(rates(&backlog, &drained).unwrap().get("joins"), Some(&10.0));
    }

    #[test]
    fn a_row_has_rates_from_the_second_sample_of_its_node_on() {
        let mut rates = Rates::default();
        let first: serde_json::Value = rates.row(sample("a", 0, 0, 1), true).unwrap().decode().unwrap();
        assert_eq!(first["rates"], serde_json::Value::Null);
        assert_eq!(first["metrics"]["connections_open"], 1);
        let other: serde_json::Value = rates.row(sample("b", 0, 100, 0), false).unwrap().decode().unwrap();
        assert_eq!((&other["rates"], &other["here"]), (&serde_json::Value::Null, &serde_json::json!(false)));
        let second: serde_json::Value = rates.row(sample("a", 500, 4, 1), true).unwrap().decode().unwrap();
        assert_eq!(second["rates"]["joins"], 8.0);
        assert_eq!((&second["node"], &second["here"]), (&serde_json::json!("a"), &serde_json::json!(true)));
    }

    #[test]
    fn long_topics_are_clipped_on_a_char_boundary() {
        assert_eq!(clip_topic("room:1".to_owned()), "room:1");
        let clipped = clip_topic(format!("room:{}", "é".repeat(100)));
        assert!(clipped.len() <= TOPIC_SHOWN + '…'.len_utf8() && clipped.ends_with('…'), "{clipped}");
    }

    #[test]
    fn watcher_topics() {
        assert!(is_watcher_topic("phx_dashboard:abc-DEF_123"));
        for bad in ["phx_dashboard", "phx_dashboard:", "phx_dashboard_ask", "phx_dashboard:a b", "room:1"] {
            assert!(!is_watcher_topic(bad), "{bad}");
        }
        assert!(!is_watcher_topic(&format!("phx_dashboard:{}", "a".repeat(65))));
    }
}
