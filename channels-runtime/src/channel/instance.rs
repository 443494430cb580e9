//! A joined channel instance between its handlers, and the futures that
//! run them.
//!
//! A channel has no task of its own: its state and [`Socket`] wait in
//! their connection's dispatcher, and each piece of mail becomes one
//! [`Step`], a future the connection's task polls. The step owns the
//! instance while it runs and gives it back when it is done, or ends the
//! channel (running `terminate` exactly once) and gives nothing back.

use std::any::TypeId;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tracing::{Instrument, Span};

use super::{Channel, JoinError, JoinFailure, Start, Terminate};
use crate::connect::Connect;
use crate::connection::Connection;
use crate::crash::Crash;
use crate::logging::{clip, clip_error, Line};
use crate::mailbox::Mail;
use crate::metrics::channel::{self as exported, Figures, Outcome};
use crate::presence::Presence;
use crate::protocol::Position;
use crate::protocol::{Outgoing, Payload, PHX_CLOSE, PHX_ERROR, PHX_RECOVERY};
use crate::pubsub::{asked_in, Asked, Handover, NotRecovered};
use crate::reply::{self, Reply, Status};
use crate::socket::Socket;

/// One step of a channel's life: a join, or one piece of mail handled.
/// `Some` gives the instance back; `None` means the channel has ended
/// (refused, crashed, stopped, left: its frames are sent and its
/// `terminate` has run).
pub(crate) type Step<S> = Pin<Box<dyn Future<Output = Option<Box<dyn Joined<S>>>> + Send>>;

/// A joined channel waiting for mail, whatever its type.
pub(crate) trait Joined<S: Connect>: Send {
    /// The step that handles `mail`.
    fn step(self: Box<Self>, mail: Mail) -> Step<S>;
}

/// A joined channel of type `C`: its state and its socket.
struct Instance<C: Channel> {
    channel: C,
    socket: Socket<C::Socket>,
}

impl<C: Channel> Joined<C::Socket> for Instance<C> {
    fn step(self: Box<Self>, mail: Mail) -> Step<C::Socket> {
        let figures = figures::<C>();
        let span = step_span(figures, self.socket.topic(), self.socket.join_ref());
        Box::pin(handle(self, mail, figures).instrument(span))
    }
}

/// The step that joins: `C::join`, then the join reply (and the
/// subscription, made before any broadcast can overtake the reply).
pub(crate) fn join<C: Channel>(start: Start<C::Socket>) -> Step<C::Socket> {
    let figures = figures::<C>();
    let span = step_span(figures, &start.topic, start.join_ref.as_deref());
    Box::pin(run_join::<C>(start, figures).instrument(span))
}

/// The ref a channel's pushes carry: the join's join_ref, or its ref when
/// the client sent no join_ref.
fn socket_join_ref<'a>(join_ref: &'a Option<Arc<str>>, msg_ref: &'a Option<String>) -> Option<&'a str> {
    join_ref.as_deref().or(msg_ref.as_deref())
}

/// The `phx_recovery` frame a client that asked for positions gets right
/// after its join reply: whether what it missed follows, and (in `ref` and
/// in the payload) the position it stands at before the first broadcast
/// this join sends it.
fn send_recovery(conn: &Connection, join_ref: Option<&str>, topic: &str, handover: &Handover) {
    let position = handover.start.as_ref().map(ToString::to_string);
    let mut body = serde_json::Map::new();
    body.insert("recovered".into(), handover.outcome.is_ok().into());
    body.insert("position".into(), position.clone().into());
    body.insert("missed".into(), handover.outcome.as_ref().map_or(0, |n| *n).into());
    if let Err(reason) = &handover.outcome {
        body.insert("reason".into(), reason.as_str().into());
    }
    let payload = Payload::from(serde_json::Value::Object(body));
    let position = position.as_deref();
    conn.send(&Outgoing::Push { join_ref, topic, event: PHX_RECOVERY, payload: &payload, position });
}

/// The metrics of channel type `C`, their handles taken once.
fn figures<C: Channel>() -> &'static Figures {
    exported::of(TypeId::of::<C>(), C::name, C::EVENTS)
}

/// The span one step of a channel runs in, inside its connection's: made
/// per step rather than kept per channel, so that an idle channel holds no
/// span (and an OpenTelemetry trace gets one span per join or message,
/// not one as long as the channel lives). Free when `info` is filtered out.
fn step_span(figures: &Figures, topic: &str, join_ref: Option<&str>) -> Span {
    tracing::info_span!("channel", topic = ?clip(topic), join_ref, channel = figures.name())
}

/// Runs a handler, turning a panic into a [`Crash`] like the errors a
/// handler returns (reported without stalling the worker: see
/// [`crate::panics`]).
async fn guarded<T, E: From<Crash>>(handler: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    crate::panics::catch(handler).await
}

async fn run_join<C: Channel>(
    start: Start<C::Socket>,
    figures: &'static Figures,
) -> Option<Box<dyn Joined<C::Socket>>> {
    let Start { topic, join_ref, msg_ref, payload, assigns, state, conn, generation } = start;
    // A join without join_ref (hand-written clients) uses its ref for the
    // channel's later frames, as Phoenix does; the join reply, phx_close and
    // phx_error echo the join_ref exactly as sent.
    let join_ref_sent = join_ref.is_some();
    let channel_ref: Option<Arc<str>> = join_ref.clone().or_else(|| msg_ref.as_deref().map(Arc::from));
    let mut socket =
        Socket::<C::Socket>::new(topic.clone(), channel_ref, join_ref_sent, assigns, state, conn.clone(), generation);
    let join_reply = |status: Status, response: &Payload| {
        conn.send(&Outgoing::Reply {
            join_ref: join_ref.as_deref(),
            msg_ref: msg_ref.as_deref(),
            topic: &topic,
            status: status.as_str(),
            response,
        });
    };

    let started = Instant::now();
    // A client that asks for positions (`phx_position`): what it missed is
    // prepared before `join`, which may look at it.
    let (payload, asked) = asked_in(payload);
    let mut no_history = false;
    if let Some(asked) = asked {
        if asked == Asked::Invalid && conn.metrics.lines.allow(Line::InvalidPosition) {
            tracing::warn!(topic = ?clip(&topic), "{}", Line::InvalidPosition.what());
        }
        match conn.pubsub.history_of(&topic) {
            Some(history) => socket.set_recovery(conn.pubsub.prepare(&topic, history, asked).await),
            None => no_history = true,
        }
    }
    let joined = guarded(C::join(topic.clone(), payload, &mut socket)).await;
    let prepared = socket.take_recovery();
    match joined.map_err(|error| refuse_over_limit(error, &conn, &topic)) {
        Ok((response, channel)) => {
            if !C::INTERCEPTS.is_empty() || prepared.is_some() {
                // Made here, in the connection's task, so that task is
                // listening to it before the first intercepted event (or
                // the first word that this node missed broadcasts).
                conn.mailbox();
            }
            let subscriber = conn.subscriber(generation).raw_events(C::INTERCEPTS);
            let recovered = |handover: &Handover| {
                join_reply(Status::Ok, &response);
                send_recovery(&conn, socket_join_ref(&join_ref, &msg_ref), &topic, handover);
            };
            match prepared {
                // Held the broker's subscription since before `join`.
                Some(prepared) => {
                    socket.take_positions_now();
                    conn.pubsub.subscribe_kept(prepared, subscriber.positions(), recovered).await;
                }
                None => {
                    // Several nodes: told "ok", the client gets every broadcast
                    // sent from any node after that, so the broker's
                    // subscription comes first (one round trip, for a topic
                    // new to this node).
                    let hold = conn.pubsub.hold(&topic).await;
                    conn.pubsub.subscribe_then(&topic, subscriber, || {
                        if no_history {
                            recovered(&Handover { start: None, outcome: Err(NotRecovered::Off) });
                        } else {
                            join_reply(Status::Ok, &response);
                        }
                    });
                    drop(hold);
                }
            }
            // Pushes made in `join`, then `Presence::track_after_join`'s work:
            // in this step, so no other message reaches the channel between.
            let after_join = socket.release_pending();
            conn.metrics.joins.incr();
            conn.metrics.channels_open.incr();
            figures.joined(Outcome::Ok, started);
            tracing::info!(topic = ?clip(&topic), elapsed = ?started.elapsed(), "joined");
            let me = Box::new(Instance { channel, socket });
            if let Err(error) = after_join {
                // The client was told "ok": the channel crashes, as a Phoenix
                // channel whose `{:ok, _} = Presence.track(..)` fails.
                let error = Crash::from(error);
                tracing::error!(topic = ?clip(&topic), error = ?clip_error(&error.to_string()), "channel crashed after its join");
                conn.metrics.channel_crashes.incr();
                figures.crashed("join");
                return end(me, Terminate::Crashed(error)).await;
            }
            Some(me)
        }
        Err(JoinError(JoinFailure::Refused { response, source })) => {
            join_reply(Status::Error, &response);
            if conn.metrics.lines.allow(Line::JoinRefused) {
                let refusal = response.as_json().map(|json| tracing::field::debug(clip(json)));
                match source {
                    Some(error) => {
                        let error = Crash::from(error).to_string();
                        tracing::info!(topic = ?clip(&topic), refusal, error = ?clip_error(&error), "{}", Line::JoinRefused.what());
                    }
                    None => tracing::info!(topic = ?clip(&topic), refusal, "{}", Line::JoinRefused.what()),
                }
            }
            conn.metrics.joins_refused.incr();
            figures.joined(Outcome::Refused, started);
            release(&mut socket);
            None
        }
        Err(JoinError(JoinFailure::Crashed(error))) => {
            tracing::error!(topic = ?clip(&topic), error = ?clip_error(&error.to_string()), "join crashed");
            conn.metrics.join_crashes.incr();
            figures.joined(Outcome::Crashed, started);
            figures.crashed("join");
            join_reply(Status::Error, &reply::reason("join crashed"));
            release(&mut socket);
            None
        }
    }
}

/// Handles one piece of mail; `figures` are `C`'s, looked up once for the
/// step's span and its metrics.
async fn handle<C: Channel>(
    mut me: Box<Instance<C>>,
    mail: Mail,
    figures: &'static Figures,
) -> Option<Box<dyn Joined<C::Socket>>> {
    let Instance { channel, socket, .. } = &mut *me;
    let conn = socket.connection().clone();
    let topic = socket.topic().clone();
    let (callback, event, outcome) = match mail {
        Mail::In { msg_ref, event, payload } => {
            let started = Instant::now();
            socket.set_current_ref(msg_ref);
            let mut outcome = guarded(channel.handle_in(&event, payload, socket)).await;
            let msg_ref = socket.take_current_ref();
            if let Some(response) = outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, &event)) {
                outcome = Ok(Reply::error(response));
            }
            figures.handled(&event, started);
            if let Ok(reply) = &outcome {
                tracing::debug!(topic = ?clip(&topic), event = ?clip(&event), elapsed = ?started.elapsed(), "handle_in");
                if let Some((status, response)) = &reply.status {
                    conn.send(&Outgoing::Reply {
                        join_ref: socket.join_ref(),
                        msg_ref: msg_ref.as_deref(),
                        topic: &topic,
                        status: status.as_str(),
                        response,
                    });
                }
            }
            ("handle_in", Cow::Owned(event), outcome)
        }
        Mail::Info(info) => {
            // The message's type names it in the log, should it crash.
            let event = info.type_name();
            let mut outcome = guarded(channel.handle_info(info, socket)).await;
            if outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, event)).is_some() {
                outcome = Ok(Reply::none());
            }
            warn_if_replied(&outcome, "handle_info");
            ("handle_info", Cow::Borrowed(event), outcome)
        }
        Mail::Out { event, payload, position } => {
            let offset = position.as_ref().map(Position::offset);
            if offset.is_some() && !conn.may_hand(socket.generation()) {
                // A newer join of the topic took over from here.
                return Some(me);
            }
            socket.set_position(position);
            let mut outcome = guarded(channel.handle_out(&event, payload, socket)).await;
            if let Some(offset) = offset {
                socket.set_position(None);
                conn.handed(socket.generation(), offset);
            }
            if outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, &event)).is_some() {
                outcome = Ok(Reply::none());
            }
            warn_if_replied(&outcome, "handle_out");
            ("handle_out", Cow::Owned(event), outcome)
        }
        Mail::Leave { msg_ref } => {
            conn.pubsub.unsubscribe(&topic, conn.outbox.id(), socket.generation());
            conn.send(&Outgoing::Reply {
                join_ref: socket.join_ref(),
                msg_ref: msg_ref.as_deref(),
                topic: &topic,
                status: Status::Ok.as_str(),
                response: &Payload::empty(),
            });
            return end(me, Terminate::Left).await;
        }
        Mail::Frames { frame, after, offset } => {
            // A broadcast `handle_out` does not take, in its place among
            // those it does (unless a newer join of the topic took over).
            if conn.may_hand(socket.generation()) {
                for frame in std::iter::once(frame).chain(after) {
                    let _ = conn.outbox.push(frame);
                }
                conn.handed(socket.generation(), offset);
            }
            return Some(me);
        }
        Mail::Resync => return end(me, Terminate::Resync).await,
        Mail::Displaced => return end(me, Terminate::Displaced).await,
        Mail::Closed => return end(me, Terminate::Closed).await,
        Mail::Shutdown => return end(me, Terminate::Shutdown).await,
    };
    match outcome {
        Ok(reply) if reply.stop => end(me, Terminate::Stopped).await,
        Ok(_) => Some(me),
        Err(error) => {
            tracing::error!(topic = ?clip(&topic), event = ?clip(&event), error = ?clip_error(&error.to_string()), "channel crashed");
            conn.metrics.channel_crashes.incr();
            figures.crashed(callback);
            end(me, Terminate::Crashed(error)).await
        }
    }
}

/// Ends a channel: unsubscribes it, runs `terminate` once, releases what it
/// held, and tells the client (`phx_error` after a crash, `phx_close`
/// otherwise, nothing once the connection is gone).
async fn end<C: Channel>(mut me: Box<Instance<C>>, reason: Terminate) -> Option<Box<dyn Joined<C::Socket>>> {
    let Instance { channel, socket, .. } = &mut *me;
    let conn = socket.connection().clone();
    let topic = socket.topic().clone();
    if socket.takes_positions() {
        // What its client was sent is kept for the join that displaced it.
        let handed = conn.forget_handed(socket.generation());
        let displaced = reason == Terminate::Displaced;
        conn.pubsub.unsubscribe_kept(&topic, conn.outbox.id(), socket.generation(), displaced, handed).await;
    } else {
        conn.pubsub.unsubscribe(&topic, conn.outbox.id(), socket.generation());
    }
    let terminated = guarded(async {
        channel.terminate(&reason, socket).await;
        Ok::<(), Crash>(())
    })
    .await;
    if let Err(error) = terminated {
        tracing::error!(topic = ?clip(&topic), error = ?clip_error(&error.to_string()), "terminate crashed");
        figures::<C>().crashed("terminate");
    }
    release(socket);
    let join_ref = socket.join_ref_as_sent();
    let control = |event: &str, payload: &Payload| {
        conn.send(&Outgoing::Control { join_ref, topic: &topic, event, payload });
    };
    match &reason {
        Terminate::Crashed(_) => control(PHX_ERROR, &reply::reason("channel_crash")),
        Terminate::Resync => control(PHX_ERROR, &reply::reason("resync")),
        // The connection is closing: no frame can reach the client.
        Terminate::Closed | Terminate::Shutdown => {}
        _ => control(PHX_CLOSE, &Payload::empty()),
    }
    conn.metrics.channels_open.decr();
    tracing::info!(topic = ?clip(&topic), ?reason, "channel ended");
    None
}

/// The error response for a handler that failed on a fan-out limit
/// ([`crate::fanout`]): such a failure is the client's doing, not a bug,
/// so the channel keeps running and the client's message is answered with
/// the limit instead. `None` for any other failure, which crashes.
fn over_limit(crash: &Crash, conn: &Connection, topic: &str, event: &str) -> Option<Payload> {
    let response = crate::fanout::refusal(crash)?;
    conn.metrics.fanout_refused.incr();
    if conn.metrics.lines.allow(Line::FanoutLimit) {
        let error = crash.to_string();
        tracing::warn!(topic = ?clip(topic), event = ?clip(event), error = ?clip_error(&error), "{}", Line::FanoutLimit.what());
    }
    Some(response)
}

/// A join that failed on a fan-out limit is refused with the limit's
/// response, whether `join` used `?` (a refusal with the error's message)
/// or crashed with it.
fn refuse_over_limit(error: JoinError, conn: &Connection, topic: &str) -> JoinError {
    let response = match &error.0 {
        JoinFailure::Refused { source, .. } => {
            crate::fanout::refusal_in_chain(source.as_deref().map(|e| e as &(dyn std::error::Error + 'static)))
        }
        JoinFailure::Crashed(crash) => crate::fanout::refusal(crash),
    };
    let Some(response) = response else { return error };
    conn.metrics.fanout_refused.incr();
    let source: crate::crash::BoxError = match error.0 {
        JoinFailure::Refused { source: Some(source), .. } => source,
        JoinFailure::Refused { source: None, .. } => "fan-out limit".into(),
        JoinFailure::Crashed(crash) => crash.to_string().into(),
    };
    if conn.metrics.lines.allow(Line::FanoutLimit) {
        let error = source.to_string();
        tracing::warn!(topic = ?clip(topic), error = ?clip_error(&error), "{} (in join)", Line::FanoutLimit.what());
    }
    JoinError(JoinFailure::Refused { response, source: Some(source) })
}

fn warn_if_replied(outcome: &Result<Reply, Crash>, handler: &str) {
    if let Ok(reply) = outcome {
        if reply.status.is_some() {
            tracing::warn!(handler, "a reply status outside handle_in has no message to answer; ignored");
        }
    }
}

/// What a channel holds beyond its state: timers, its address and the
/// presences it tracked. Released when it ends, however it ends (presences
/// after `terminate`, which may still want to read them).
fn release<S: Connect>(socket: &mut Socket<S>) {
    socket.release();
    Presence::untrack_owner(socket.pubsub(), socket.owner());
}
