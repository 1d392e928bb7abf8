//! The event loop: `epoll_wait` and its dispatch, the idle sweep, the drain at shutdown.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use syncomm_common::logsink::LogHandle;
use syncomm_common::shutdown::Shutdown;
use syncomm_sys::unixsock;

use super::connection::{answer, flush, forget, on_event, State};
use super::listener::{Server, LOCAL_LISTENER, TCP_LISTENER, WAKE};
use super::log::{Event, LogSender};
use super::slab::Slab;
use super::{sys, LiveStats, ServerError, Stats, DRAIN_LIMIT, LINGER};
use crate::protocol::{self, MAX_LINE};

/// Everything one loop's handlers share besides its connection table.
pub(super) struct Ctx<'s> {
    pub(super) epoll: Epoll,
    pub(super) now: Instant,
    pub(super) idle: Option<Duration>,
    pub(super) draining: bool,
    pub(super) lingering: usize,
    /// Connections served (open or closing) by all loops together.
    pub(super) open: &'s AtomicUsize,
    /// Figures for the status record.
    pub(super) live: &'s LiveStats,
    pub(super) stats: Stats,
    pub(super) scratch: Vec<u8>,
    pub(super) log: Option<LogSender>,
}

/// What the loops share.
struct Shared<'s> {
    shutdown: &'s Shutdown,
    /// Figures for the status record.
    live: &'s LiveStats,
    /// Connections served (open or closing) by all loops together.
    open: &'s AtomicUsize,
    /// Whether the local socket file was removed (by the first loop to stop).
    unlinked: &'s AtomicBool,
}

impl Server {
    /// Serves until `shutdown` is requested, logging each request to `log` if given.
    ///
    /// Runs `threads` copies of the event loop (see
    /// [`ServerConfig::threads`](super::ServerConfig::threads)).
    /// Passing lines to the log never waits: a stalled or closed output only
    /// costs log lines (dropped and counted by the sink), never service.
    pub fn run(self, shutdown: &Shutdown, log: Option<LogHandle>) -> Result<Stats, ServerError> {
        let nonblocking = |r: io::Result<()>| {
            r.map_err(|e| ServerError::Sys {
                what: "set_nonblocking",
                source: e,
            })
        };
        if let Some(l) = &self.tcp {
            nonblocking(l.set_nonblocking(true))?;
        }
        if let Some((l, _, _)) = &self.local {
            nonblocking(l.set_nonblocking(true))?;
        }
        let json = self.config.json_log;
        let unlinked = AtomicBool::new(false);
        let live = self.live.clone();
        let shared = Shared {
            shutdown,
            open: &live.open,
            live: &live,
            unlinked: &unlinked,
        };
        let results: Vec<Result<Stats, ServerError>> = std::thread::scope(|scope| {
            let this = &self;
            let shared = &shared;
            let others: Vec<_> = (1..self.config.threads.max(1))
                .map(|_| {
                    let log = log.clone().map(|h| LogSender::new(h, json));
                    scope.spawn(move || this.event_loop(shared, log))
                })
                .collect();
            let log = log.map(|h| LogSender::new(h, json));
            let mut results = vec![this.event_loop(shared, log)];
            if results[0].is_err() {
                // This loop failed: make the others stop too.
                shutdown.request();
            }
            results.extend(
                others
                    .into_iter()
                    .map(|h| h.join().expect("event loop panicked")),
            );
            results
        });
        let mut total = Stats::default();
        for r in results {
            let s = r?;
            total.accepted += s.accepted;
            total.busy += s.busy;
            total.requests += s.requests;
            total.idle_drops += s.idle_drops;
        }
        Ok(total)
    }

    /// One event loop: its own epoll set and connections, the listeners
    /// shared with the other loops.
    fn event_loop(
        &self,
        shared: &Shared<'_>,
        log: Option<LogSender>,
    ) -> Result<Stats, ServerError> {
        let shutdown = shared.shutdown;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(sys("epoll_create"))?;
        epoll
            .add(
                shutdown.wake_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, WAKE),
            )
            .map_err(sys("epoll_ctl"))?;
        let mut ctx = Ctx {
            epoll,
            now: Instant::now(),
            idle: self.config.idle_timeout,
            draining: false,
            lingering: 0,
            open: shared.open,
            live: shared.live,
            stats: Stats::default(),
            scratch: vec![0; MAX_LINE + 1],
            log,
        };
        self.listen(&ctx, true).map_err(sys("epoll_ctl"))?;
        let mut conns = Slab::default();
        let sweep_every = match self.config.idle_timeout {
            Some(d) => (d / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)),
            None => Duration::from_secs(1),
        }
        .min(LINGER / 2);
        let mut next_sweep = ctx.now + sweep_every;
        let mut listeners_paused = false;
        let mut drain_until = None;
        let mut events = vec![EpollEvent::empty(); 256];

        loop {
            let wait = next_sweep.saturating_duration_since(ctx.now);
            let timeout = EpollTimeout::try_from(wait + Duration::from_micros(999))
                .unwrap_or(EpollTimeout::MAX);
            let n = match ctx.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(sys("epoll_wait")(e)),
            };
            ctx.now = Instant::now();
            for ev in &events[..n] {
                match ev.data() {
                    // Seen through `shutdown.requested()` below; the byte is
                    // left in place so that every loop wakes up.
                    WAKE => {}
                    TCP_LISTENER | LOCAL_LISTENER if !ctx.draining => {
                        let paused = self.accept_all(ev.data(), &mut ctx, &mut conns);
                        listeners_paused |= paused;
                    }
                    TCP_LISTENER | LOCAL_LISTENER => {}
                    token => {
                        if let Some(conn) = conns.get_mut(token as usize) {
                            if !on_event(conn, ev.events(), &mut ctx) {
                                let conn = conns.remove(token as usize);
                                forget(conn, &mut ctx);
                            }
                        }
                    }
                }
            }
            if shutdown.requested() && !ctx.draining {
                // Stop accepting, stop watching the signal, answer what is in flight.
                ctx.draining = true;
                if !listeners_paused {
                    let _ = self.listen(&ctx, false);
                }
                let _ = ctx.epoll.delete(shutdown.wake_fd());
                if !shared.unlinked.swap(true, Ordering::SeqCst) {
                    if let Some((_, path, id)) = &self.local {
                        unixsock::remove_if_ours(path, *id);
                    }
                }
                drain_until = Some(ctx.now + DRAIN_LIMIT);
                begin_drain(&mut ctx, &mut conns);
            }
            if ctx.now >= next_sweep {
                next_sweep = ctx.now + sweep_every;
                sweep(&mut ctx, &mut conns);
                if listeners_paused && !ctx.draining && self.listen(&ctx, true).is_ok() {
                    listeners_paused = false;
                }
            }
            if let Some(log) = ctx.log.as_mut() {
                log.pass_on();
            }
            if let Some(until) = drain_until {
                if conns.is_empty() || ctx.now >= until {
                    break;
                }
            }
        }
        if let Some(mut log) = ctx.log.take() {
            log.pass_on();
        }
        Ok(ctx.stats)
    }
}

/// Drops connections whose deadline passed.
fn sweep(ctx: &mut Ctx<'_>, conns: &mut Slab) {
    let now = ctx.now;
    let expired: Vec<usize> = conns
        .iter()
        .filter(|(_, c)| c.deadline.is_some_and(|d| now >= d))
        .map(|(slot, _)| slot)
        .collect();
    for slot in expired {
        let conn = conns.remove(slot);
        if conn.state == State::Open {
            ctx.stats.idle_drops += 1;
            // Best effort: tell the peer why, then close.
            let _ = nix::unistd::write(&conn.fd, protocol::IDLE);
            if let Some(log) = ctx.log.as_mut() {
                log.event(Event::Idle, conn.peer);
            }
        }
        forget(conn, ctx);
    }
}

/// Shutdown: answer what every connection already sent, then close them all.
fn begin_drain(ctx: &mut Ctx<'_>, conns: &mut Slab) {
    let slots: Vec<usize> = conns.iter().map(|(s, _)| s).collect();
    for slot in slots {
        let conn = conns.get_mut(slot).expect("listed");
        let keep = match conn.state {
            State::Open => {
                // Whatever has arrived: read it, answer it, then close. What
                // has arrived fits in the receive buffer: read no more than
                // that, or a client that keeps sending would keep us here,
                // piling up answers, forever.
                let mut budget = getsockopt(&conn.fd, sockopt::RcvBuf).unwrap_or(MAX_LINE);
                let mut alive = true;
                while budget > 0 {
                    match nix::unistd::read(&conn.fd, &mut ctx.scratch) {
                        Ok(0) => break,
                        Ok(n) => {
                            budget = budget.saturating_sub(n);
                            conn.inbuf.extend_from_slice(&ctx.scratch[..n]);
                            answer(conn, ctx);
                            if conn.state != State::Open || conn.paused {
                                break;
                            }
                        }
                        Err(Errno::EINTR) => {}
                        Err(Errno::EAGAIN) => break,
                        Err(_) => {
                            alive = false;
                            break;
                        }
                    }
                }
                conn.state = State::Closing;
                alive && flush(conn, ctx)
            }
            State::Closing => flush(conn, ctx),
            State::Lingering => false,
        };
        if !keep {
            let conn = conns.remove(slot);
            forget(conn, ctx);
        }
    }
}
