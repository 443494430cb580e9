//! The dashboard's own socket and its one channel: a page joins
//! `phx_dashboard:<id>` and is pushed a row per node every tick, while it
//! stays joined. The tick is the channel's own timer: it dies with the
//! channel, so nothing runs for a dashboard nobody watches.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::sample::{self, Rates, Sample, Sampler, ROW_EVENT};
use super::{Access, Guard};
use crate::channel::{Channel, Info, JoinError, Route, Routes};
use crate::connect::{Connect, ConnectInfo, Params, Refuse};
use crate::crash::Crash;
use crate::protocol::Payload;
use crate::reply::Reply;
use crate::router::Topic;
use crate::socket::Socket;

/// How often a watcher is pushed its rows.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// The socket a dashboard page connects to, at `<path>/socket`.
pub(crate) struct DashboardSocket;

/// What the dashboard's socket and channel share: the app's guard and the
/// node's sampler.
pub(crate) struct Watch {
    pub(crate) guard: Arc<dyn Guard>,
    pub(crate) sampler: Arc<Sampler>,
}

impl Connect for DashboardSocket {
    type State = Watch;
    type Assigns = ();

    async fn connect(params: &Params, info: &ConnectInfo, watch: &Watch) -> Result<(), Refuse> {
        watch.guard.check(&Access::socket(params, info))
    }
}

impl Routes for DashboardSocket {
    const ROUTES: &'static [Route<Self>] = &[Route::new::<Watcher>("phx_dashboard:*")];
}

/// The next tick of a watcher.
struct Tick;

/// One page watching: the previous sample of each node, for rates.
pub(crate) struct Watcher {
    rates: Rates,
}

impl Watcher {
    /// Pushes `sample` (of this node when `here`) as a row, with its rates.
    fn push(&mut self, sample: Sample, here: bool, socket: &mut Socket<DashboardSocket>) -> Result<(), Crash> {
        let row = self.rates.row(sample, here)?;
        socket.push(ROW_EVENT, row)?;
        Ok(())
    }

    /// This node's row now, and the other nodes asked for theirs (they
    /// answer on this watcher's topic); then the next tick.
    fn tick(&mut self, socket: &mut Socket<DashboardSocket>) -> Result<(), Crash> {
        let sample = socket.state().sampler.sample(socket.pubsub());
        self.push(sample, true, socket)?;
        sample::ask(socket.pubsub(), socket.topic());
        socket.send_after(TICK, Tick);
        Ok(())
    }
}

impl Channel for Watcher {
    type Socket = DashboardSocket;

    /// Other nodes' answers, to add their rates before they reach the page.
    const INTERCEPTS: &'static [&'static str] = &[ROW_EVENT];

    async fn join(
        topic: Topic,
        _payload: Payload,
        socket: &mut Socket<DashboardSocket>,
    ) -> Result<(Payload, Self), JoinError> {
        if !sample::is_watcher_topic(&topic) {
            return Err(JoinError::reason(
                "a dashboard topic is phx_dashboard:<id>, the id of letters, digits, - and _",
            ));
        }
        let mut watcher = Watcher { rates: Rates::default() };
        // The first row goes out right after the join reply; other nodes
        // are asked from the first tick on, once this topic is subscribed.
        let sample = socket.state().sampler.sample(socket.pubsub());
        let node = sample.node.clone();
        watcher.push(sample, true, socket)?;
        socket.send_after(TICK, Tick);
        let interval_ms = u64::try_from(TICK.as_millis()).unwrap_or(u64::MAX);
        let response = json!({"node": node, "interval_ms": interval_ms, "multi_node": socket.pubsub().is_multi_node()});
        Ok((Payload::json(&response).map_err(JoinError::crash)?, watcher))
    }

    async fn handle_in(
        &mut self,
        _event: &str,
        _payload: Payload,
        _socket: &mut Socket<DashboardSocket>,
    ) -> Result<Reply, Crash> {
        // The page only listens.
        Ok(Reply::unknown_event())
    }

    async fn handle_out(
        &mut self,
        _event: &str,
        payload: Payload,
        socket: &mut Socket<DashboardSocket>,
    ) -> Result<Reply, Crash> {
        match payload.decode::<Sample>() {
            Ok(sample) => self.push(sample, false, socket)?,
            // Whatever else reaches this topic is no node's answer.
            Err(error) => {
                let error = error.to_string();
                tracing::warn!(error = ?crate::logging::clip(&error), topic = ?crate::logging::clip(socket.topic()), "malformed dashboard row ignored");
            }
        }
        Ok(Reply::none())
    }

    async fn handle_info(&mut self, info: Info, socket: &mut Socket<DashboardSocket>) -> Result<Reply, Crash> {
        if info.is::<Tick>() {
            self.tick(socket)?;
        }
        Ok(Reply::none())
    }
}
