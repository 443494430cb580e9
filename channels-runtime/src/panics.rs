//! Panics in channel handlers, reported without stalling the runtime.
//!
//! A handler that panics crashes its channel alone (the client gets
//! `phx_error`, as with a Phoenix channel crash). Reporting it is the
//! expensive part: with `RUST_BACKTRACE=1` the standard panic hook
//! captures *and symbolises* a backtrace on the thread that panicked, a
//! runtime worker, which stalls every other channel that worker serves for
//! tens of milliseconds per panic.
//!
//! So the runtime installs a panic hook of its own, once, the first time a
//! channel handler runs. **This is a process-wide side effect.** For a panic
//! inside a channel handler (`join`, `handle_in`, `handle_info`,
//! `handle_out`, `terminate`) the hook only notes where it happened and,
//! when backtraces are enabled (`RUST_BACKTRACE`/`RUST_LIB_BACKTRACE`),
//! captures an unresolved backtrace; the runtime then logs one `ERROR` line
//! `"handler panicked"` with `tracing`, resolving the backtrace on a thread of
//! its own at idle priority, not on a worker. Reports are rate-limited process-wide (at
//! most [`REPORTS_PER_INTERVAL`] lines, [`BACKTRACES_PER_INTERVAL`] of them
//! with a backtrace, per [`REPORT_INTERVAL`]; the rest are counted in one
//! summary line), so a storm of panics cannot flood the CPU or the logs.
//! Every other panic goes to the hook that was installed before, so an
//! application's own hook — set before it starts serving — still sees its
//! own panics, and the standard hook still prints those.
//!
//! To keep the standard behaviour for handler panics too (a message and
//! backtrace on stderr, at the cost above), call [`leave_hook_alone`] before
//! serving. An application that calls [`std::panic::set_hook`] *after* the
//! first channel ran replaces this hook: its hook then sees every panic,
//! handler panics included, and the runtime no longer logs their location.
//!
//! ```
//! # use phx_channels_runtime as phx_channels;
//! // At start, before `Endpoint::serve`: handler panics go to the standard
//! // hook (or the application's own), as in a program without channels.
//! phx_channels::panics::leave_hook_alone();
//! ```

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Once, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;

use crate::crash::Crash;
use crate::logging::{clip, Throttle};

/// The window of the rate limits on panic reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Handler panics logged per [`REPORT_INTERVAL`], process-wide.
pub const REPORTS_PER_INTERVAL: u32 = 10;
/// Of those, how many carry a backtrace (when backtraces are enabled):
/// capturing one walks the stack, resolving it reads debug info.
pub const BACKTRACES_PER_INTERVAL: u32 = 2;

static REPORTS: Throttle = Throttle::new(REPORTS_PER_INTERVAL, REPORT_INTERVAL, "handler panic reports");
static BACKTRACES: Throttle = Throttle::new(BACKTRACES_PER_INTERVAL, REPORT_INTERVAL, "handler panic backtraces");

static INSTALL: Once = Once::new();
static LEFT_ALONE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while this thread polls a channel handler: marks its panics ours.
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
    /// What the hook noted about the handler panic this thread is unwinding.
    static NOTED: RefCell<Option<Noted>> = const { RefCell::new(None) };
}

/// Leaves the process's panic hook alone: handler panics reach whatever
/// hook is installed (by default the standard one, which prints a message
/// and, with `RUST_BACKTRACE` set, a backtrace resolved on the worker that
/// panicked). Takes effect only if called before the first channel handler
/// runs; after that, the runtime's hook is in place (replace it with
/// [`std::panic::set_hook`] if need be).
pub fn leave_hook_alone() {
    LEFT_ALONE.store(true, Ordering::Relaxed);
}

/// The hook's notes on one handler panic: cheap to take on the worker.
struct Noted {
    location: String,
    /// `None` when this panic is not to be reported (rate limit).
    report: bool,
    backtrace: Option<Backtrace>,
}

fn install() {
    INSTALL.call_once(|| {
        if LEFT_ALONE.load(Ordering::Relaxed) {
            return;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_HANDLER.get() {
                note(info);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs on the panicking worker: nothing here may resolve symbols or block.
fn note(info: &PanicHookInfo<'_>) {
    let location = info.location().map(ToString::to_string).unwrap_or_default();
    let report = REPORTS.allow();
    let backtrace = if report && BACKTRACES.allow() {
        // Unresolved: the walk is cheap, the symbols are read later.
        Some(Backtrace::capture()).filter(|b| b.status() == BacktraceStatus::Captured)
    } else {
        None
    };
    NOTED.set(Some(Noted { location, report, backtrace }));
}

/// Runs a channel handler, turning a panic into the same `Err` a handler
/// returns (the panic's message), and reports the panic as described in the
/// [module docs](self).
pub(crate) async fn catch<T, E: From<Crash>>(handler: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    install();
    match AssertUnwindSafe(Marked(Box::pin(handler))).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = message(&*panic).to_owned();
            report(&message);
            Err(E::from(Crash::panic(message)))
        }
    }
}

fn report(message: &str) {
    let Some(noted) = NOTED.take() else {
        // Another hook saw this panic (see `leave_hook_alone`).
        return;
    };
    if !noted.report {
        return;
    }
    let Noted { location, backtrace, .. } = noted;
    match backtrace {
        None => tracing::error!(panic = ?clip(message), location, "handler panicked"),
        Some(backtrace) => {
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let job = Resolve { message: clip(message).to_string(), location, backtrace, dispatch };
            if let Some(resolver) = resolver() {
                // Full only past the rate limit's burst; the report is dropped then.
                let _ = resolver.try_send(job);
            }
        }
    }
}

/// A backtrace to resolve and log, off the workers.
struct Resolve {
    message: String,
    location: String,
    backtrace: Backtrace,
    /// The subscriber of the worker that caught the panic.
    dispatch: tracing::Dispatch,
}

/// The thread that resolves backtraces. Resolving reads debug info for tens
/// of milliseconds of CPU; on its own thread, scheduled only when no other
/// thread wants the CPU (Linux `SCHED_IDLE`), it cannot starve the workers
/// even on a machine with fewer cores than busy threads.
fn resolver() -> Option<&'static SyncSender<Resolve>> {
    static RESOLVER: OnceLock<Option<SyncSender<Resolve>>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| {
            let (jobs, queue) = std::sync::mpsc::sync_channel::<Resolve>(BACKTRACES_PER_INTERVAL as usize);
            let spawned = std::thread::Builder::new().name("channels-panic-reports".into()).spawn(move || {
                lower_priority();
                for Resolve { message, location, backtrace, dispatch } in queue {
                    let backtrace = backtrace.to_string();
                    tracing::dispatcher::with_default(&dispatch, || {
                        tracing::error!(panic = %message, location, backtrace = %backtrace, "handler panicked");
                    });
                }
            });
            spawned.ok().map(|_| jobs)
        })
        .as_ref()
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads `param`; pid 0 is this thread.
    // Best effort: if refused, the thread runs at normal priority.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// The message a panic was raised with.
pub(crate) fn message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// A handler's future, marked as one while it is polled: a panic raised in
/// that poll is a handler panic (tasks it spawns are polled unmarked).
struct Marked<F>(Pin<Box<F>>);

impl<F: Future> Future for Marked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _marked = Mark::set();
        self.0.as_mut().poll(cx)
    }
}

/// Restores the mark when the poll ends, by return or by unwinding.
struct Mark(bool);

impl Mark {
    fn set() -> Self {
        Mark(IN_HANDLER.replace(true))
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        IN_HANDLER.set(self.0);
    }
}
