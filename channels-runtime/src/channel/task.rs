//! The task one joined channel runs in, from join to terminate.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use super::{Channel, JoinError, JoinFailure, Mail, Start, Terminate};
use crate::crash::Crash;
use crate::logging::{clip, clip_error};
use crate::metrics::Metrics;
use crate::protocol::{Outgoing, Payload, PHX_CLOSE, PHX_ERROR};
use crate::pubsub::{Delivery, Subscriber};
use crate::reply::{self, Reply, Status};
use crate::socket::{Connection, Socket};

pub(crate) fn spawn<C: Channel>(start: Start<C::Socket>) {
    tokio::spawn(run::<C>(start));
}

/// Runs a handler, turning a panic into a [`Crash`] like the errors a
/// handler returns (reported without stalling the worker: see
/// [`crate::panics`]).
///
/// The handler's future is boxed for the duration of the call, so an idle
/// channel's task holds only its state, not room for its largest handler.
async fn guarded<T, E: From<Crash>>(handler: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    crate::panics::catch(handler).await
}

/// The life of one joined channel.
async fn run<C: Channel>(start: Start<C::Socket>) {
    let Start { topic, join_ref, msg_ref, payload, assigns, state, conn, generation, mut mailbox, me } = start;
    // A join without join_ref (hand-written clients) uses its ref for the
    // channel's later frames, as Phoenix does; the join reply, phx_close and
    // phx_error echo the join_ref exactly as sent.
    let channel_ref: Option<Arc<str>> = join_ref.as_deref().or(msg_ref.as_deref()).map(Arc::from);
    let mut socket =
        Socket::<C::Socket>::new(topic.clone(), channel_ref, assigns, state, conn.clone(), me.clone(), generation);
    let join_reply = |status: Status, response: &Payload| {
        conn.send(&Outgoing::Reply {
            join_ref: join_ref.as_deref(),
            msg_ref: msg_ref.as_deref(),
            topic: &topic,
            status: status.as_str(),
            response,
        });
    };

    let started = std::time::Instant::now();
    let joined = guarded(C::join(topic.clone(), payload, &mut socket)).await;
    let mut channel = match joined.map_err(|error| refuse_over_limit(error, &conn, &topic)) {
        Ok((response, channel)) => {
            let subscriber = Subscriber {
                outbox: conn.outbox.clone(),
                serializer: conn.serializer,
                generation,
                delivery: Delivery::Fastlane,
                intercepts: C::INTERCEPTS,
                channel: Some(me),
            };
            conn.pubsub.subscribe(topic.shared(), subscriber, || join_reply(Status::Ok, &response));
            socket.release_pending();
            Metrics::incr(&conn.metrics.joins);
            Metrics::incr(&conn.metrics.channels_open);
            tracing::info!(topic = ?clip(&topic), elapsed = ?started.elapsed(), "joined");
            channel
        }
        Err(JoinError(JoinFailure::Refused { response, source })) => {
            join_reply(Status::Error, &response);
            let refusal = response.as_json().map(|json| tracing::field::debug(clip(json)));
            match source {
                Some(error) => {
                    let error = Crash::from(error).to_string();
                    tracing::info!(topic = ?clip(&topic), refusal, error = ?clip_error(&error), "join refused");
                }
                None => tracing::info!(topic = ?clip(&topic), refusal, "join refused"),
            }
            Metrics::incr(&conn.metrics.joins_refused);
            return refuse_pending(&mut socket, mailbox).await;
        }
        Err(JoinError(JoinFailure::Crashed(error))) => {
            tracing::error!(topic = ?clip(&topic), error = ?clip_error(&error.to_string()), "join crashed");
            Metrics::incr(&conn.metrics.join_crashes);
            join_reply(Status::Error, &reply::reason("join crashed"));
            return refuse_pending(&mut socket, mailbox).await;
        }
    };

    let reason = loop {
        let Some(mail) = mailbox.recv().await else { break Terminate::Closed };
        let (event, outcome) = match *mail {
            Mail::In { msg_ref, event, payload } => {
                let started = std::time::Instant::now();
                socket.set_current_ref(msg_ref);
                let mut outcome = guarded(channel.handle_in(&event, payload, &mut socket)).await;
                let msg_ref = socket.take_current_ref();
                if let Some(response) =
                    outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, &event))
                {
                    outcome = Ok(Reply::error(response));
                }
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
                (Cow::Owned(event), outcome)
            }
            Mail::Info(info) => {
                // The message's type names it in the log, should it crash.
                let event = info.type_name();
                let mut outcome = guarded(channel.handle_info(info, &mut socket)).await;
                if outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, event)).is_some() {
                    outcome = Ok(Reply::none());
                }
                warn_if_replied(&outcome, "handle_info");
                (Cow::Borrowed(event), outcome)
            }
            Mail::Out { event, payload } => {
                let mut outcome = guarded(channel.handle_out(&event, payload, &mut socket)).await;
                if outcome.as_ref().err().and_then(|crash| over_limit(crash, &conn, &topic, &event)).is_some() {
                    outcome = Ok(Reply::none());
                }
                warn_if_replied(&outcome, "handle_out");
                (Cow::Owned(event), outcome)
            }
            Mail::Leave { msg_ref } => {
                conn.pubsub.unsubscribe(&topic, conn.outbox.id(), generation);
                conn.send(&Outgoing::Reply {
                    join_ref: socket.join_ref(),
                    msg_ref: msg_ref.as_deref(),
                    topic: &topic,
                    status: Status::Ok.as_str(),
                    response: &Payload::empty(),
                });
                break Terminate::Left;
            }
            Mail::Displaced => break Terminate::Displaced,
            Mail::Shutdown => break Terminate::Shutdown,
        };
        match outcome {
            Ok(reply) if reply.stop => break Terminate::Stopped,
            Ok(_) => {}
            Err(error) => {
                tracing::error!(topic = ?clip(&topic), event = ?clip(&event), error = ?clip_error(&error.to_string()), "channel crashed");
                Metrics::incr(&conn.metrics.channel_crashes);
                break Terminate::Crashed(error);
            }
        }
    };

    // No more mail: the dispatcher sees this channel gone from here on, so
    // a rejoin after phx_error is a fresh join.
    mailbox.close();
    conn.pubsub.unsubscribe(&topic, conn.outbox.id(), generation);
    let terminated = guarded(async {
        channel.terminate(&reason, &mut socket).await;
        Ok::<(), Crash>(())
    })
    .await;
    if let Err(error) = terminated {
        tracing::error!(topic = ?clip(&topic), error = ?clip_error(&error.to_string()), "terminate crashed");
    }
    release(&mut socket);
    let control = |event: &str, payload: &Payload| {
        conn.send(&Outgoing::Control { join_ref: join_ref.as_deref(), topic: &topic, event, payload });
    };
    match &reason {
        Terminate::Crashed(_) => control(PHX_ERROR, &reply::reason("channel_crash")),
        // The connection is closing: no frame can reach the client.
        Terminate::Closed | Terminate::Shutdown => {}
        _ => control(PHX_CLOSE, &Payload::empty()),
    }
    Metrics::decr(&conn.metrics.channels_open);
    tracing::info!(topic = ?clip(&topic), ?reason, "channel ended");
}

/// The error response for a handler that failed on a fan-out limit
/// ([`crate::fanout`]): such a failure is the client's doing, not a bug,
/// so the channel keeps running and the client's message is answered with
/// the limit instead. `None` for any other failure, which crashes.
fn over_limit(crash: &Crash, conn: &Connection, topic: &str, event: &str) -> Option<Payload> {
    let response = crate::fanout::refusal(crash)?;
    Metrics::incr(&conn.metrics.fanout_refused);
    if conn.limits.warnings.allow() {
        let error = crash.to_string();
        tracing::warn!(topic = ?clip(topic), event = ?clip(event), error = ?clip_error(&error), "fan-out limit hit; answered with an error");
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
    Metrics::incr(&conn.metrics.fanout_refused);
    let source: crate::crash::BoxError = match error.0 {
        JoinFailure::Refused { source: Some(source), .. } => source,
        JoinFailure::Refused { source: None, .. } => "fan-out limit".into(),
        JoinFailure::Crashed(crash) => crash.to_string().into(),
    };
    if conn.limits.warnings.allow() {
        let error = source.to_string();
        tracing::warn!(topic = ?clip(topic), error = ?clip_error(&error), "fan-out limit hit in join; refused");
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

/// After a refused join, answers anything the client sent meanwhile as if
/// the topic had never been joined.
///
/// Whatever the failed join left behind goes with it: its timers and the
/// presences it tracked.
async fn refuse_pending<S: crate::connect::Connect>(socket: &mut Socket<S>, mut mailbox: super::MailReceiver) {
    mailbox.close();
    release(socket);
    while let Some(mail) = mailbox.recv().await {
        if let Mail::In { msg_ref, .. } = *mail {
            socket.connection().send(&Outgoing::Reply {
                join_ref: None,
                msg_ref: msg_ref.as_deref(),
                topic: socket.topic(),
                status: Status::Error.as_str(),
                response: &reply::reason("unmatched topic"),
            });
        }
    }
}

/// What a channel holds beyond its task: timers and presences. Released
/// when it ends, however it ends (presences after `terminate`, which may
/// still want to read them).
fn release<S: crate::connect::Connect>(socket: &mut Socket<S>) {
    socket.cancel_timers();
    if let Some(tracker) = socket.pubsub().tracker_if_started() {
        tracker.untrack_owner(socket.owner());
    }
}
