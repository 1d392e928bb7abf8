//! The event loop: one `epoll_wait` turn after another, and the drain at shutdown.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollFlags, EpollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use syncomm_common::duration::format_duration;
use syncomm_common::shutdown::Shutdown;

use super::children::spawn_worker;
use super::connection::sweep_every;
use super::dispatch::Job;
use super::readiness::Source;
use super::{LogEvent, ServeError, Server, SHUTDOWN_GRACE};
use crate::protocol::{CallError, CallErrorKind};

impl Server {
    /// Serves until `shutdown` is requested and every accepted call is
    /// answered; then stops the children and removes the socket.
    pub fn run(mut self, shutdown: &Shutdown) -> Result<(), ServeError> {
        self.watch_wake(shutdown)?;
        loop {
            if shutdown.requested() && self.draining.is_none() {
                self.begin_drain(shutdown);
            }
            if let Some(since) = self.draining {
                self.drop_orphaned_children();
                if since.elapsed() > self.cfg.drain_timeout {
                    self.abandon_calls();
                }
                let calls_done =
                    self.pending.is_empty() && self.workers.iter().all(|w| w.running.is_empty());
                let answers_out = self.conns.values().all(|c| c.outbuf.is_empty());
                if calls_done
                    && (answers_out || since.elapsed() > self.cfg.drain_timeout + SHUTDOWN_GRACE)
                {
                    break;
                }
            }
            (self.buffered, self.privileged) = self.total_buffered();
            let ready = self.wait()?;
            self.now = Instant::now();
            for k in 0..ready {
                let (Some(source), revents) = self.ready(k) else {
                    continue;
                };
                match source {
                    Source::Wake => shutdown.drain(),
                    Source::Listener => self.accept(),
                    Source::Conn(id) => {
                        self.conn_readable(id);
                        if revents.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                            // Both directions closed: the caller is gone,
                            // its answers are dropped.
                            self.conns.remove(&id);
                        }
                    }
                    Source::WorkerOut(serial) => {
                        if let Some(i) = self.worker_position(serial) {
                            self.worker_readable(i)?;
                        }
                    }
                    Source::WorkerIn(_) => {} // flushed below
                }
            }
            self.check_timeouts()?;
            self.sweep_idle();
            // Requests left unread by back-pressure may now fit.
            let mut next = self.conns.keys().next().copied();
            while let Some(id) = next {
                self.take_requests(id);
                next = self.conns.range(id + 1..).next().map(|(id, _)| *id);
            }
            self.dispatch();
            self.flush_all();
            let r = Ordering::Relaxed;
            self.live.workers.store(self.workers.len(), r);
            self.live.queue.store(self.pending.len(), r);
            let running = self.workers.iter().map(|w| w.running.len()).sum();
            self.live.running.store(running, r);
            self.live.connections.store(self.conns.len(), r);
        }
        self.stop_children();
        self.say(LogEvent::Stopped);
        Ok(())
    }

    pub(super) fn begin_drain(&mut self, shutdown: &Shutdown) {
        self.draining = Some(Instant::now());
        self.listener = None;
        syncomm_sys::unixsock::remove_if_ours(&self.path, self.socket_id);
        // Calls whose callers left are not worth waiting for.
        let conns = &self.conns;
        let (keep, orphans): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|j| conns.contains_key(&j.conn));
        self.pending = keep;
        for job in orphans {
            self.retire(job.cost);
        }
        self.drop_orphaned_children();
        let in_flight =
            self.pending.len() + self.workers.iter().map(|w| w.running.len()).sum::<usize>();
        self.say(LogEvent::Stopping {
            signal: shutdown.signal(),
            in_flight,
        });
    }

    /// Until the earliest task deadline (counted from the turn's clock, which
    /// a slow step of the turn refreshes); bounded while draining.
    pub(super) fn wait_timeout(&self) -> EpollTimeout {
        let now = self.now;
        let mut until: Option<Duration> = self.draining.map(|_| Duration::from_millis(50));
        if let Some(t) = self.accept_paused.filter(|t| *t > now) {
            let left = t - now;
            until = Some(until.map_or(left, |u| u.min(left)));
        }
        if let (Some(idle), false) = (self.cfg.idle_timeout, self.conns.is_empty()) {
            let left = (self.swept + sweep_every(idle)).saturating_duration_since(now);
            until = Some(until.map_or(left, |u| u.min(left)));
        }
        if let Some(limit) = self.cfg.task_timeout {
            for w in &self.workers {
                if !w.running.is_empty() {
                    let left = (w.head_since + limit).saturating_duration_since(now);
                    until = Some(until.map_or(left, |u| u.min(left)));
                }
            }
        }
        match until {
            None => EpollTimeout::NONE,
            // Whole milliseconds, one more, so we never wake just before
            // the deadline.
            Some(d) => EpollTimeout::try_from(d.saturating_add(Duration::from_millis(1)))
                .unwrap_or(EpollTimeout::MAX),
        }
    }

    pub(super) fn flush_all(&mut self) {
        for w in &mut self.workers {
            // EPIPE means the child died; its stdout's end tells us the rest.
            let _ = w.outbuf.flush_to(&mut w.stdin);
        }
        // (Not `retain`: it costs more per turn than this loop, and a
        // connection rarely ends.)
        let mut ended = Vec::new();
        for (id, c) in &mut self.conns {
            let gone = c.outbuf.flush_to(&mut c.stream).is_err(); // the caller left
            let finished = c.outbuf.is_empty() && (c.doomed || (c.read_closed && c.in_flight == 0));
            if gone || finished {
                ended.push(*id);
            }
        }
        for id in ended {
            self.conns.remove(&id);
        }
    }

    /// While draining: a child none of whose calls has a caller any more is
    /// killed at once (its calls are dropped; no replacement is started).
    pub(super) fn drop_orphaned_children(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let w = &self.workers[i];
            let orphaned = !w.running.is_empty()
                && w.running.iter().all(|j| !self.conns.contains_key(&j.conn));
            if !orphaned {
                i += 1;
                continue;
            }
            let mut w = self.workers.remove(i);
            let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
            let _ = w.process.wait();
            let n = w.running.len();
            for job in std::mem::take(&mut w.running) {
                self.retire(job.cost);
            }
            self.say(LogEvent::CallersLeft {
                index: w.index,
                worker_pid: w.pid,
                calls: n,
            });
            if !self.pending.is_empty() {
                // Calls with callers still wait: they need this place.
                if let Ok(fresh) = spawn_worker(&self.cfg, w.index) {
                    self.say(LogEvent::WorkerStarted {
                        index: w.index,
                        worker_pid: fresh.pid,
                    });
                    self.workers.insert(i, fresh);
                    i += 1;
                }
            }
        }
    }

    /// Past `--drain-timeout`: every call not yet finished is answered with
    /// a "shutting down" error and the children running them are killed.
    pub(super) fn abandon_calls(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut abandoned = pending.len();
        let msg = format!(
            "the server shut down before the call finished (--drain-timeout {})",
            format_duration(self.cfg.drain_timeout)
        );
        for job in pending {
            self.answer(job, Err(CallError::new(CallErrorKind::ShuttingDown, &*msg)));
        }
        let mut i = 0;
        while i < self.workers.len() {
            if self.workers[i].running.is_empty() {
                i += 1;
                continue;
            }
            let mut w = self.workers.remove(i);
            let _ = kill(Pid::from_raw(w.pid), Signal::SIGKILL);
            let _ = w.process.wait();
            for job in std::mem::take(&mut w.running) {
                abandoned += 1;
                self.answer(job, Err(CallError::new(CallErrorKind::ShuttingDown, &*msg)));
            }
        }
        if abandoned > 0 {
            self.say(LogEvent::DrainTimeout {
                drain_timeout: self.cfg.drain_timeout,
                abandoned,
            });
        }
    }
}
