//! What `worker serve` logs: one [`LogEvent`] per thing that happened to the
//! pool (children started and replaced, callers closed, shutdown). The
//! server hands each to its log function; `Display` words it as the text
//! line, and `Serialize` gives its JSON form for `worker serve --json`: an
//! object with one key, the event's name in snake_case, whose value holds
//! the event's fields (pids as `*_pid`, times in `*_ms`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Serialize, Serializer};
use syncomm_common::duration::format_duration;

/// One event in the pool's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogEvent {
    /// The socket of a server that died was in the way, and was removed.
    StaleSocketRemoved {
        /// The socket's path.
        path: PathBuf,
    },
    /// A child was started in slot `index`.
    WorkerStarted {
        /// The slot, 1-based.
        index: usize,
        /// The child's pid.
        worker_pid: i32,
    },
    /// The pool is up: every child started, the socket listening.
    Serving {
        /// The pool's name.
        name: String,
        /// The socket's path.
        socket: PathBuf,
        /// Children.
        workers: usize,
    },
    /// A child ran a call past `--task-timeout` and was killed.
    TaskTimeout {
        /// The slot.
        index: usize,
        /// The child's pid.
        worker_pid: i32,
        /// The function it was running.
        function: String,
        /// The limit.
        #[serde(rename = "task_timeout_ms", serialize_with = "as_ms")]
        task_timeout: Duration,
    },
    /// A child answered out of turn or sent garbage, and was killed.
    WorkerMisbehaved {
        /// The slot.
        index: usize,
        /// The child's pid.
        worker_pid: i32,
        /// What it did wrong.
        reason: String,
    },
    /// A child ended on its own (it exited, or died from a signal).
    WorkerEnded {
        /// The slot.
        index: usize,
        /// The child's pid.
        worker_pid: i32,
        /// The call it was running, if it was running one.
        function: Option<String>,
        /// Its exit code, if it exited.
        worker_exit_code: Option<i32>,
        /// The signal that killed it, if one did.
        worker_signal: Option<i32>,
        /// Why it could not be reaped, if it could not.
        reap_error: Option<String>,
    },
    /// A caller broke the protocol: it was told why, and closed.
    ProtocolError {
        /// The connection's number (1-based, in order of arrival).
        connection: u64,
        /// The caller's pid, if the kernel told it.
        peer_pid: Option<i32>,
        /// The caller's uid, if the kernel told it.
        peer_uid: Option<u32>,
        /// What was wrong.
        reason: String,
    },
    /// Callers that completed no request for `--idle-timeout` were closed.
    IdleClosed {
        /// How many.
        connections: usize,
        /// The limit.
        #[serde(rename = "idle_timeout_ms", serialize_with = "as_ms")]
        idle_timeout: Duration,
    },
    /// SIGINT/SIGTERM: the pool stops taking calls and finishes those in flight.
    Stopping {
        /// The signal, if one asked (else a request from the program).
        signal: Option<i32>,
        /// Calls still to finish.
        in_flight: usize,
    },
    /// While stopping, a child whose callers had all left was killed.
    CallersLeft {
        /// The slot.
        index: usize,
        /// The child's pid.
        worker_pid: i32,
        /// The calls it held.
        calls: usize,
    },
    /// `--drain-timeout` passed: the calls left were answered with an error.
    DrainTimeout {
        /// The limit.
        #[serde(rename = "drain_timeout_ms", serialize_with = "as_ms")]
        drain_timeout: Duration,
        /// Calls abandoned.
        abandoned: usize,
    },
    /// Every child is gone; the server exits.
    Stopped,
}

fn as_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(syncomm_common::jsonl::ms(*d))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogEvent::StaleSocketRemoved { path } => write!(
                f,
                "removed stale socket {} (its server is gone)",
                path.display()
            ),
            LogEvent::WorkerStarted { index, worker_pid } => {
                write!(f, "worker {index} started (pid {worker_pid})")
            }
            LogEvent::Serving {
                name,
                socket,
                workers,
            } => write!(
                f,
                "serving {name} at {} ({})",
                socket.display(),
                plural(*workers, "worker", "workers")
            ),
            LogEvent::TaskTimeout {
                index,
                worker_pid,
                function,
                task_timeout,
            } => write!(
                f,
                "worker {index} (pid {worker_pid}) ran {function} past the task timeout of {}: killed",
                format_duration(*task_timeout)
            ),
            LogEvent::WorkerMisbehaved {
                index,
                worker_pid,
                reason,
            } => write!(
                f,
                "worker {index} (pid {worker_pid}) broke the protocol ({reason}): killed"
            ),
            LogEvent::WorkerEnded {
                index,
                worker_pid,
                function,
                worker_exit_code,
                worker_signal,
                reap_error,
            } => {
                write!(f, "worker {index} (pid {worker_pid}) ")?;
                match (worker_signal, worker_exit_code, reap_error) {
                    (_, _, Some(e)) => write!(f, "could not be reaped ({e})")?,
                    (Some(sig), _, _) => write!(f, "died from signal {sig}")?,
                    (None, Some(code), _) => write!(f, "exited with status {code}")?,
                    _ => write!(f, "ended")?,
                }
                match function {
                    Some(func) => write!(f, " while running {func}"),
                    None => write!(f, " while idle"),
                }
            }
            LogEvent::ProtocolError {
                connection,
                peer_pid,
                peer_uid,
                reason,
            } => {
                write!(f, "connection {connection} (")?;
                match (peer_pid, peer_uid) {
                    (Some(pid), Some(uid)) => write!(f, "pid {pid}, uid {uid}")?,
                    _ => write!(f, "peer unknown")?,
                }
                write!(f, ") broke the protocol: {reason}; closed")
            }
            LogEvent::IdleClosed {
                connections,
                idle_timeout,
            } => write!(
                f,
                "closed {} (no request for {})",
                plural(*connections, "idle connection", "idle connections"),
                format_duration(*idle_timeout)
            ),
            LogEvent::Stopping { signal, in_flight } => {
                let sig = match signal {
                    Some(s) => Signal::try_from(*s)
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or(s.to_string()),
                    None => "request".to_owned(),
                };
                write!(
                    f,
                    "stopping ({sig}): finishing {} in flight",
                    plural(*in_flight, "call", "calls")
                )
            }
            LogEvent::CallersLeft {
                index,
                worker_pid,
                calls,
            } => write!(
                f,
                "worker {index} (pid {worker_pid}) killed: the callers of its {} left",
                plural(*calls, "call", "calls")
            ),
            LogEvent::DrainTimeout {
                drain_timeout,
                abandoned,
            } => write!(
                f,
                "drain timeout ({}): {} abandoned",
                format_duration(*drain_timeout),
                plural(*abandoned, "call", "calls")
            ),
            LogEvent::Stopped => write!(f, "stopped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_keep_their_wording() {
        let ended = LogEvent::WorkerEnded {
            index: 2,
            worker_pid: 77,
            function: Some("abort".into()),
            worker_exit_code: None,
            worker_signal: Some(6),
            reap_error: None,
        };
        assert_eq!(
            ended.to_string(),
            "worker 2 (pid 77) died from signal 6 while running abort"
        );
        let idle = LogEvent::IdleClosed {
            connections: 1,
            idle_timeout: Duration::from_millis(500),
        };
        assert_eq!(
            idle.to_string(),
            "closed 1 idle connection (no request for 500ms)"
        );
        assert_eq!(
            LogEvent::Stopping {
                signal: Some(15),
                in_flight: 2
            }
            .to_string(),
            "stopping (SIGTERM): finishing 2 calls in flight"
        );
    }
}
