//! `syncomm-peers`: iceoryx2 and ipc-channel doing the jobs syncomm's figures
//! do, each used the way its own documentation recommends (blocking or
//! event-driven waits, no busy loops), measured in trials like
//! `syncomm-bench` measures syncomm. It prints one JSON line per figure:
//!
//! `{"key": "...", "peer": "...", "what": "...", "unit": "us", "trials": [trial medians], "p99": x}`
//!
//! | key | what | compared with |
//! |---|---|---|
//! | `iceoryx2.event` | notifier → listener process wakes (one way) | notify wake-up |
//! | `iceoryx2.request_response` | request → server process → response, event-driven | worker call |
//! | `iceoryx2.publish_subscribe` | publish a u64 + receive it (one process) | board append + snapshot |
//! | `ipc-channel.round_trip` | u64 request → server process → u64 answer | worker call, local ping |
//!
//! Roles: the measuring side runs here; the other side is this binary again,
//! started with `--role NAME`. `SYNCOMM_BENCH_MAIN_CPUS` / `SYNCOMM_BENCH_PEER_CPUS`
//! (comma-separated CPU numbers) pin each side, as `syncomm-bench` pins its own.
//! No unsafe code here: only the crates' safe APIs and nix.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::prelude::*;
use ipc_channel::ipc::{self as ipcc, IpcOneShotServer, IpcReceiver, IpcSender};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WAIT: Duration = Duration::from_secs(1);
/// How often the other side looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

/// Set when the measuring side closes our stdin: time to leave, releasing
/// every iceoryx2 resource on the way out.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stopping() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Watches stdin: at its end (the measuring side is done or gone), sets STOP.
fn watch_stdin() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::Read::read(&mut std::io::stdin(), &mut buf) {
            if n == 0 {
                break;
            }
        }
        STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

fn main() {
    set_log_level_from_env_or(LogLevel::Error);
    let args: Vec<String> = std::env::args().collect();
    let result = if let Some(i) = args.iter().position(|a| a == "--role") {
        pin_from_env("SYNCOMM_BENCH_PEER_CPUS");
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        watch_stdin();
        role(&args[i + 1], &args[i + 2..])
    } else {
        pin_from_env("SYNCOMM_BENCH_MAIN_CPUS");
        measure_all(&args[1..])
    };
    if let Err(e) = result {
        eprintln!("syncomm-peers: {e}");
        std::process::exit(1);
    }
}

/// Pins this process (its main thread, before any other exists) to the CPUs
/// listed in `var`, if set.
fn pin_from_env(var: &str) {
    let Ok(list) = std::env::var(var) else { return };
    let mut set = nix::sched::CpuSet::new();
    for c in list.split(',').filter_map(|c| c.trim().parse::<usize>().ok()) {
        let _ = set.set(c);
    }
    if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
        eprintln!("syncomm-peers: pinning to {list}: {e}");
    }
}

fn now_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// Trials and samples per trial.
struct Plan {
    trials: usize,
    samples: usize,
}

/// Runs `trial` `plan.trials` times and prints the figure's JSON line.
fn figure(
    key: &str,
    peer: &str,
    what: &str,
    plan: &Plan,
    mut trial: impl FnMut(usize) -> Res<Vec<f64>>,
) -> Res<()> {
    let mut medians = Vec::new();
    let mut all = Vec::new();
    trial(plan.samples / 5)?; // warm-up
    for _ in 0..plan.trials {
        let mut s = trial(plan.samples)?;
        medians.push(median(&mut s));
        all.extend(s);
    }
    let p99 = quantile(&mut all, 0.99);
    let line = serde_json::json!({
        "key": key, "peer": peer, "what": what, "unit": "us",
        "trials": medians, "p99": p99,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// The other side, killed and reaped when dropped.
struct Side(Child);

impl Side {
    /// Starts `--role NAME ARGS` and waits for its `ready` line.
    fn start(name: &str, args: &[&str]) -> Res<Side> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--role")
            .arg(name)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let side = Side(child);
        if line.trim() != "ready" {
            return Err(format!("role {name} said {line:?}").into());
        }
        Ok(side)
    }
}

impl Drop for Side {
    /// Closes its stdin (it stops within POLL and cleans up), killing it
    /// only if it has not gone within 3 s.
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ready() -> Res<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}

fn measure_all(args: &[String]) -> Res<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let only: Vec<&str> = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1..].iter().map(String::as_str).collect())
        .unwrap_or_default();
    let want = |k: &str| only.is_empty() || only.iter().any(|o| k.starts_with(o));
    let trials = if quick { 3 } else { 5 };
    let tag = format!("syncomm-peers-{}", std::process::id());
    if want("iceoryx2.event") {
        let plan = Plan {
            trials,
            samples: if quick { 100 } else { 400 },
        };
        event(&tag, &plan)?;
    }
    if want("iceoryx2.request_response") {
        let plan = Plan {
            trials,
            samples: if quick { 1_000 } else { 5_000 },
        };
        request_response(&tag, &plan)?;
    }
    if want("iceoryx2.publish_subscribe") {
        let plan = Plan {
            trials,
            samples: if quick { 20_000 } else { 200_000 },
        };
        publish_subscribe(&tag, &plan)?;
    }
    if want("ipc-channel.round_trip") {
        let plan = Plan {
            trials,
            samples: if quick { 1_000 } else { 5_000 },
        };
        ipc_round_trip(&plan)?;
    }
    Ok(())
}

fn role(name: &str, args: &[String]) -> Res<()> {
    let tag = args.first().ok_or("role needs an argument")?;
    match name {
        "event-listener" => event_listener(tag),
        "rr-server" => rr_server(tag),
        "ipc-server" => ipc_server(tag),
        _ => Err(format!("unknown role {name}").into()),
    }
}

fn service_name(tag: &str, what: &str) -> Res<ServiceName> {
    Ok(format!("{tag}/{what}").as_str().try_into()?)
}

fn node() -> Res<Node<ipc::Service>> {
    Ok(NodeBuilder::new().create::<ipc::Service>()?)
}

// ---- iceoryx2 event: one-way wake-up ------------------------------------------------
//
// The measuring side publishes CLOCK_MONOTONIC (a u64 sample, zero-copy) and
// notifies; the listener process sleeps in `Listener::timed_wait`, wakes,
// takes the sample and computes now − stamp (so the figure includes one
// publish, a few hundred ns at most), publishes it back and notifies. As in
// syncomm's notify figure, the listener is left 300 µs to fall asleep first.

fn event(tag: &str, plan: &Plan) -> Res<()> {
    let node = node()?;
    let back = node
        .service_builder(&service_name(tag, "ev-back")?)
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let back_sub = back.subscriber_builder().create()?;
    let ack = node
        .service_builder(&service_name(tag, "ev-ack")?)
        .event()
        .open_or_create()?;
    let ack_listener = ack.listener_builder().create()?;
    let _side = Side::start("event-listener", &[tag])?;
    let stamp = node
        .service_builder(&service_name(tag, "ev-stamp")?)
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let stamp_pub = stamp.publisher_builder().create()?;
    let go = node
        .service_builder(&service_name(tag, "ev-go")?)
        .event()
        .open_or_create()?;
    let go_notifier = go.notifier_builder().create()?;
    figure(
        "iceoryx2.event",
        "iceoryx2 0.10",
        "event: notifier → listener process wakes (Listener::timed_wait), one way",
        plan,
        |n| {
            let mut out = Vec::with_capacity(n);
            while out.len() < n {
                std::thread::sleep(Duration::from_micros(300));
                let s = stamp_pub.loan_uninit()?.write_payload(now_ns());
                s.send()?;
                go_notifier.notify()?;
                let t = Instant::now();
                loop {
                    ack_listener.timed_wait(|_| {}, WAIT)?;
                    if let Some(lat) = back_sub.receive()? {
                        out.push(*lat as f64 / 1e3);
                        break;
                    }
                    if t.elapsed() > Duration::from_secs(10) {
                        return Err("the event listener does not answer".into());
                    }
                }
            }
            Ok(out)
        },
    )
}

fn event_listener(tag: &str) -> Res<()> {
    let node = node()?;
    let stamp = node
        .service_builder(&service_name(tag, "ev-stamp")?)
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let stamp_sub = stamp.subscriber_builder().create()?;
    let go = node
        .service_builder(&service_name(tag, "ev-go")?)
        .event()
        .open_or_create()?;
    let go_listener = go.listener_builder().create()?;
    let back = node
        .service_builder(&service_name(tag, "ev-back")?)
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let back_pub = back.publisher_builder().create()?;
    let ack = node
        .service_builder(&service_name(tag, "ev-ack")?)
        .event()
        .open_or_create()?;
    let ack_notifier = ack.notifier_builder().create()?;
    ready()?;
    while !stopping() {
        go_listener.timed_wait(|_| {}, POLL)?;
        let woke = now_ns();
        while let Some(s) = stamp_sub.receive()? {
            back_pub.send_copy(woke.saturating_sub(*s))?;
            ack_notifier.notify()?;
        }
    }
    Ok(())
}

// ---- iceoryx2 request-response, event-driven ------------------------------------------
//
// The client sends a u64 request and notifies the server's listener; the
// server wakes (Listener::timed_wait), answers every request it holds and
// notifies the client's listener; the client wakes and takes the response.

fn request_response(tag: &str, plan: &Plan) -> Res<()> {
    let node = node()?;
    let resp_ev = node
        .service_builder(&service_name(tag, "rr-resp")?)
        .event()
        .open_or_create()?;
    let resp_listener = resp_ev.listener_builder().create()?;
    let rr = node
        .service_builder(&service_name(tag, "rr")?)
        .request_response::<u64, u64>()
        .open_or_create()?;
    let _side = Side::start("rr-server", &[tag])?;
    let client = rr.client_builder().create()?;
    let req_ev = node
        .service_builder(&service_name(tag, "rr-req")?)
        .event()
        .open_or_create()?;
    let req_notifier = req_ev.notifier_builder().create()?;
    figure(
        "iceoryx2.request_response",
        "iceoryx2 0.10",
        "request-response round trip, u64 → server process → u64, event-driven waits",
        plan,
        |n| {
            let mut out = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                let pending = client.send_copy(i)?;
                req_notifier.notify()?;
                loop {
                    if let Some(r) = pending.receive()? {
                        if *r != i + 1 {
                            return Err(format!("asked {i}, answered {}", *r).into());
                        }
                        break;
                    }
                    resp_listener.timed_wait(|_| {}, WAIT)?;
                    if t.elapsed() > Duration::from_secs(10) {
                        return Err("the iceoryx2 server does not answer".into());
                    }
                }
                out.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok(out)
        },
    )
}

fn rr_server(tag: &str) -> Res<()> {
    let node = node()?;
    let rr = node
        .service_builder(&service_name(tag, "rr")?)
        .request_response::<u64, u64>()
        .open_or_create()?;
    let server = rr.server_builder().create()?;
    let req_ev = node
        .service_builder(&service_name(tag, "rr-req")?)
        .event()
        .open_or_create()?;
    let req_listener = req_ev.listener_builder().create()?;
    let resp_ev = node
        .service_builder(&service_name(tag, "rr-resp")?)
        .event()
        .open_or_create()?;
    let resp_notifier = resp_ev.notifier_builder().create()?;
    ready()?;
    while !stopping() {
        req_listener.timed_wait(|_| {}, POLL)?;
        while let Some(req) = server.receive()? {
            req.send_copy(*req + 1)?;
            drop(req);
            resp_notifier.notify()?;
        }
    }
    Ok(())
}

// ---- iceoryx2 publish-subscribe of a small value, one process --------------------------

fn publish_subscribe(tag: &str, plan: &Plan) -> Res<()> {
    let node = node()?;
    let svc = node
        .service_builder(&service_name(tag, "ps")?)
        .publish_subscribe::<u64>()
        .open_or_create()?;
    let sub = svc.subscriber_builder().create()?;
    let publisher = svc.publisher_builder().create()?;
    figure(
        "iceoryx2.publish_subscribe",
        "iceoryx2 0.10",
        "publish a u64 (send_copy) + the subscriber takes it, one process, per pair",
        plan,
        |n| {
            // Samples of 1000 pairs each, in µs per pair.
            let blocks = (n / 1000).max(1);
            let mut out = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let t = Instant::now();
                for i in 0..1000u64 {
                    publisher.send_copy(i)?;
                    match sub.receive()? {
                        Some(s) if *s == i => {}
                        other => {
                            return Err(format!("block {b}: sent {i}, got {:?}", other.map(|s| *s)).into())
                        }
                    }
                }
                out.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
            }
            Ok(out)
        },
    )
}

// ---- ipc-channel: request/answer round trip between two processes ---------------------
//
// Bootstrap as the crate documents: an IpcOneShotServer whose name the server
// process connects to; it sends back its request sender and answer receiver.
// Each call is a blocking send and a blocking recv.

type Boot = (IpcSender<u64>, IpcReceiver<u64>);

fn ipc_round_trip(plan: &Plan) -> Res<()> {
    let (server, name) = IpcOneShotServer::<Boot>::new()?;
    let _side = Side::start("ipc-server", &[&name])?;
    let (_, (req_tx, resp_rx)) = server.accept()?;
    figure(
        "ipc-channel.round_trip",
        "ipc-channel 0.23",
        "u64 request → server process → u64 answer, blocking send/recv",
        plan,
        |n| {
            let mut out = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let t = Instant::now();
                req_tx.send(i)?;
                let r = resp_rx.recv()?;
                out.push(t.elapsed().as_secs_f64() * 1e6);
                if r != i + 1 {
                    return Err(format!("asked {i}, answered {r}").into());
                }
            }
            Ok(out)
        },
    )
}

fn ipc_server(name: &str) -> Res<()> {
    let (req_tx, req_rx) = ipcc::channel::<u64>()?;
    let (resp_tx, resp_rx) = ipcc::channel::<u64>()?;
    let boot = IpcSender::<Boot>::connect(name.to_string())?;
    ready()?;
    boot.send((req_tx, resp_rx))?;
    while let Ok(v) = req_rx.recv() {
        if resp_tx.send(v + 1).is_err() {
            break;
        }
    }
    Ok(())
}
