//! Load mode: many connections pinging as fast as they can.
//!
//! Each client is a thread with its own connection, one request in flight:
//! write a ping, wait for its pong, time it, repeat. With `reconnect` every
//! ping opens a new connection (as the seed's client did), which measures
//! `connect` + `accept` + close instead of the round trip alone (TCP
//! connections are then closed with a reset, so they leave no `TIME_WAIT`).
//! Round trips go into a [`Histogram`] per thread (fixed memory however long
//! the run), merged at the end into requests/s and percentiles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncomm_common::jsonl::{round, Line};
use syncomm_common::shutdown::Shutdown;

use crate::client::{ping_once, wait_or_shutdown, PingError, Stream};
use crate::protocol;
use crate::Endpoint;

/// How long one flood request may wait for its answer before it counts as an error.
pub const FLOOD_TIMEOUT: Duration = Duration::from_secs(5);

/// When a flood ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// After this long.
    Duration(Duration),
    /// After this many requests in all.
    Count(u64),
}

/// What `ping-client --flood` is asked to do.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Where the server is.
    pub endpoint: Endpoint,
    /// Connections pinging at once (one thread each).
    pub clients: usize,
    /// When to stop.
    pub limit: Limit,
    /// A new connection for every ping.
    pub reconnect: bool,
    /// Payload bytes per ping.
    pub payload: usize,
    /// Where to count the answered requests as they come, for a progress
    /// display (`None`: not counted until the end).
    pub progress: Option<Arc<AtomicU64>>,
}

/// What a flood measured.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Requests answered correctly.
    pub ok: u64,
    /// Requests that failed (connect refused, reset, timed out, wrong answer).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Round-trip times of the answered requests.
    pub latency: Histogram,
    /// The first error seen, worded.
    pub first_error: Option<String>,
}

impl FloodReport {
    /// Answered requests per second.
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The two report lines.
    pub fn lines(&self) -> [String; 2] {
        let h = &self.latency;
        let ms = |q: f64| h.quantile(q).as_secs_f64() * 1e3;
        [
            format!(
                "{} requests in {:.3} s: {:.0} requests/s, {} errors",
                self.ok,
                self.elapsed.as_secs_f64(),
                self.per_second(),
                self.errors
            ),
            format!(
                "latency p50/p90/p99/max = {:.3}/{:.3}/{:.3}/{:.3} ms",
                ms(0.50),
                ms(0.90),
                ms(0.99),
                h.max().as_secs_f64() * 1e3
            ),
        ]
    }

    /// The report as one JSON line of `ping-client` (`flood`, see docs/JSON.md).
    pub fn json(&self) -> Line {
        let h = &self.latency;
        Line::new("ping-client", "flood")
            .field("requests", self.ok)
            .field("errors", self.errors)
            .ms("elapsed_ms", self.elapsed)
            .field("requests_per_s", round(self.per_second(), 1))
            .ms("latency_p50_ms", h.quantile(0.5))
            .ms("latency_p90_ms", h.quantile(0.9))
            .ms("latency_p99_ms", h.quantile(0.99))
            .ms("latency_max_ms", h.max())
            .field("first_error", &self.first_error)
    }
}

/// Runs a flood; returns when the limit is reached or `shutdown` is requested.
pub fn flood(cfg: &FloodConfig, shutdown: &Shutdown) -> FloodReport {
    let stop = Arc::new(AtomicBool::new(false));
    let tickets = Arc::new(AtomicU64::new(match cfg.limit {
        Limit::Count(n) => n,
        Limit::Duration(_) => u64::MAX,
    }));
    let start = Instant::now();
    let handles: Vec<_> = (0..cfg.clients.max(1))
        .map(|_| {
            let (cfg, stop, tickets) = (cfg.clone(), Arc::clone(&stop), Arc::clone(&tickets));
            std::thread::spawn(move || client_loop(&cfg, &stop, &tickets))
        })
        .collect();
    match cfg.limit {
        Limit::Duration(d) => wait_or_shutdown(shutdown, d),
        Limit::Count(_) => {
            while !shutdown.requested() && !handles.iter().all(|h| h.is_finished()) {
                wait_or_shutdown(shutdown, Duration::from_millis(10));
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut report = FloodReport {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(),
        first_error: None,
    };
    for h in handles {
        let r = h.join().expect("flood thread panicked");
        report.ok += r.ok;
        report.errors += r.errors;
        report.latency.merge(&r.latency);
        if report.first_error.is_none() {
            report.first_error = r.first_error;
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// One flood client: ping, time, repeat, until told to stop.
fn client_loop(cfg: &FloodConfig, stop: &AtomicBool, tickets: &AtomicU64) -> FloodReport {
    let (request, expected) = protocol::exchange(cfg.payload);
    let mut buf = Vec::with_capacity(expected.len());
    let mut conn: Option<Stream> = None;
    let mut r = FloodReport {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(),
        first_error: None,
    };
    while !stop.load(Ordering::Relaxed) {
        // Take a ticket (count mode); none left means done.
        if tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
            .is_err()
        {
            break;
        }
        let t0 = Instant::now();
        let result = match conn.as_mut() {
            Some(s) => Ok(s),
            // A plain blocking connect (on loopback it is answered at once)
            // and a read timeout, so a stuck server cannot hang the flood.
            None => Stream::connect(&cfg.endpoint, None)
                .and_then(|s| {
                    s.set_read_timeout(Some(FLOOD_TIMEOUT))?;
                    Ok(s)
                })
                .map(|s| conn.insert(s))
                .map_err(PingError::Connect),
        }
        .and_then(|s| ping_once(s, &request, &expected, &mut buf, None, FLOOD_TIMEOUT));
        match result {
            Ok(()) => {
                r.ok += 1;
                r.latency.record(t0.elapsed());
                if let Some(p) = &cfg.progress {
                    p.fetch_add(1, Ordering::Relaxed);
                }
                if cfg.reconnect {
                    // Close with SO_LINGER 0 (a reset, once the answer is in):
                    // a normal close would leave each of these connections in
                    // TIME_WAIT for a minute, and a flood of them runs out of
                    // ephemeral ports (about 28 K) or spends its time hunting
                    // for a free one in connect().
                    if let Some(Stream::Tcp(s)) = &conn {
                        let _ = nix::sys::socket::setsockopt(
                            s,
                            nix::sys::socket::sockopt::Linger,
                            &libc::linger {
                                l_onoff: 1,
                                l_linger: 0,
                            },
                        );
                    }
                    conn = None; // close: the next ping connects anew
                }
            }
            Err(e) => {
                conn = None;
                r.errors += 1;
                if r.first_error.is_none() {
                    r.first_error = Some(e.to_string());
                }
                // Do not spin on a server that is not there.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    r
}

/// A latency histogram with fixed memory: buckets 2% wide on a log scale
/// from 1 ns to about 100 s, so percentiles are within 2%.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    n: u64,
    max_ns: u64,
}

const GROWTH: f64 = 1.02;
const BUCKETS: usize = 1300;

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            n: 0,
            max_ns: 0,
        }
    }

    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        let i = ((ns.max(1) as f64).ln() / GROWTH.ln()) as usize;
        self.counts[i.min(BUCKETS - 1)] += 1;
        self.n += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The `q` quantile (0.0..=1.0), within 2%; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.n == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let mid = GROWTH.powf(i as f64 + 0.5);
                return Duration::from_nanos((mid as u64).min(self.max_ns));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1e6;
        assert!((490.0..=510.0).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).as_secs_f64() * 1e6;
        assert!((970.0..=1000.0).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.len(), 1000);
    }
}
