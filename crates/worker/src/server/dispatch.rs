//! The queue of calls: jobs waiting, handed to the least busy child, and answered to their callers.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::children::Worker;
use super::{Server, PIPELINE_DEPTH, SLOW_CALL};
use crate::protocol::{CallError, CallErrorKind, Request, Response, ToClient};

/// One call on its way through the pool.
#[derive(Debug)]
pub(super) struct Job {
    /// Bytes it holds (its request's frame body), counted in `jobs_bytes`.
    pub(super) cost: usize,
    /// The caller's connection.
    pub(super) conn: u64,
    /// The caller's own request id.
    pub(super) caller_id: u64,
    /// The request as sent to a child (its id is the server-wide job id).
    pub(super) req: Request,
}

impl Server {
    /// Sends a job's result to its caller, if the caller is still there.
    pub(super) fn answer(&mut self, job: Job, result: Result<crate::protocol::Value, CallError>) {
        self.retire(job.cost);
        self.live.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.conns.get_mut(&job.conn) {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.active = self.now;
            let _ = c.outbuf.push(&ToClient::Answer(Response {
                id: job.caller_id,
                result,
            }));
        }
    }

    /// Hands pending jobs to the children with the fewest jobs.
    pub(super) fn dispatch(&mut self) {
        let now = self.now;
        // A child whose current call has run for a while may be in a long
        // one: queue behind it only when every child is like that (else the
        // job waits here for a quick child to have room).
        let slow =
            |w: &Worker| !w.running.is_empty() && now.duration_since(w.head_since) > SLOW_CALL;
        let all_slow = self.workers.iter().all(slow);
        while let Some(job) = self.pending.front() {
            if !self.conns.contains_key(&job.conn) {
                // Its caller left before it started: nobody wants the answer.
                let job = self.pending.pop_front().expect("front checked");
                self.retire(job.cost);
                continue;
            }
            // Past the budget a child gets a call only once its pipe buffer
            // is empty (so the pool never stalls, and holds one copy at most).
            let over = self.buffered >= self.cfg.max_buffered;
            let Some(w) = self
                .workers
                .iter_mut()
                .filter(|w| w.running.len() < PIPELINE_DEPTH && (all_slow || !slow(w)))
                .filter(|w| !over || w.outbuf.is_empty())
                .min_by_key(|w| w.running.len())
            else {
                return;
            };
            let job = self.pending.pop_front().expect("front checked");
            if w.outbuf.push(&job.req).is_err() {
                // Cannot happen for values that decoded; answer rather than lose it.
                self.answer(
                    job,
                    Err(CallError::new(
                        CallErrorKind::Failed,
                        "cannot encode the request",
                    )),
                );
                continue;
            }
            if w.running.is_empty() {
                // Its time starts now, not at the turn's start: the turn may
                // have spent a while reading (the task timeout counts from here).
                w.head_since = Instant::now();
            }
            self.buffered += job.cost;
            w.running.push_back(job);
        }
    }

    /// A job leaves the pool: its bytes no longer count.
    pub(super) fn retire(&mut self, cost: usize) {
        debug_assert!(cost <= self.jobs_bytes, "job bytes miscounted");
        self.jobs_bytes = self.jobs_bytes.saturating_sub(cost);
    }
}
