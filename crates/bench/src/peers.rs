//! The peers: iceoryx2 and ipc-channel doing the same jobs, measured by the
//! `syncomm-peers` program of `bench/peers/` (its own workspace, built only by
//! `./launch bench --peers`) in the same run and configuration as our figures.
//!
//! `syncomm-peers` prints one JSON line per figure (`key`, `peer`, `what`,
//! `unit`, `trials`: the trial medians, `p99`); each is shown beside our figure
//! doing the same job ([`COMPARE`]), with our cost ÷ the peer's cost.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cpu::{self, CpuConfig};
use crate::report::{format_spread, format_value, Report, Row};
use crate::{stats, Ctx, Figure, Unit};

/// Each peer figure and the ids of our figures doing the same job.
pub const COMPARE: [(&str, &[&str]); 4] = [
    ("iceoryx2.event", &["notify.wake"]),
    ("iceoryx2.request_response", &["worker.call"]),
    ("iceoryx2.publish_subscribe", &["notify.append_snapshot"]),
    ("ipc-channel.round_trip", &["worker.call", "ping.rtt_local"]),
];

/// One peer figure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerRow {
    /// The configuration it was measured in.
    pub config: CpuConfig,
    /// `iceoryx2.event`, ...
    pub key: String,
    /// `iceoryx2 0.10`.
    pub peer: String,
    /// What it does.
    pub what: String,
    /// Its trial medians, µs.
    pub trials: Vec<f64>,
    /// p99 over every sample, µs.
    pub p99: Option<f64>,
}

impl PeerRow {
    /// Median of the trial medians.
    pub fn median(&self) -> f64 {
        stats::median(&mut self.trials.clone())
    }

    /// Min–max of the trial medians.
    pub fn spread(&self) -> (f64, f64) {
        let lo = self.trials.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self
            .trials
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    }
}

/// The peers of a run.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// `not run (use --peers)`, or what was run.
    pub status: String,
    /// The figures.
    pub rows: Vec<PeerRow>,
    /// Per configuration, why the peers were not measured.
    pub failed: Vec<(CpuConfig, String)>,
}

/// Runs `exe` (syncomm-peers) in `ctx`'s configuration, within `limit`.
pub fn run(ctx: &Ctx, exe: &Path, limit: Duration) -> anyhow::Result<Vec<PeerRow>> {
    let mut cmd = Command::new(exe);
    if ctx.quick {
        cmd.arg("--quick");
    }
    cmd.env("SYNCOMM_BENCH_MAIN_CPUS", cpu::list(&ctx.main_cpus()))
        .env("SYNCOMM_BENCH_PEER_CPUS", cpu::list(&ctx.peer_cpus()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cpu::pin_command(&mut cmd, &ctx.main_cpus());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("syncomm-peers did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap_or_default();
    let rows = parse(&text, ctx.config)?;
    if !status.success() {
        bail!(
            "syncomm-peers exited with {status} after {} figures",
            rows.len()
        );
    }
    Ok(rows)
}

/// Reads `syncomm-peers`' JSON lines.
pub fn parse(text: &str, config: CpuConfig) -> anyhow::Result<Vec<PeerRow>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("line {line:?}"))?;
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let trials: Vec<f64> = v["trials"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if trials.is_empty() {
            bail!("no trials in {line:?}");
        }
        rows.push(PeerRow {
            config,
            key: s("key"),
            peer: s("peer"),
            what: s("what"),
            trials,
            p99: v["p99"].as_f64(),
        });
    }
    Ok(rows)
}

/// Our figures, in `config`, that do the job of peer figure `key`.
fn ours<'a>(report: &'a Report, config: CpuConfig, key: &str) -> Vec<&'a Figure> {
    let ids = COMPARE
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(&[][..], |(_, ids)| *ids);
    ids.iter()
        .filter_map(|id| {
            report.rows.iter().find_map(|r| match r {
                Row::Measured(f) if f.config == Some(config) && f.id == *id => Some(f),
                _ => None,
            })
        })
        .collect()
}

/// The peers' table: one row per peer figure and our figure doing the same job.
pub fn render(report: &Report, markdown: bool) -> String {
    let mut out = String::new();
    if report.peers.rows.is_empty() && report.peers.failed.is_empty() {
        let _ = writeln!(out, "peers: {}\n", report.peers.status);
        return out;
    }
    let _ = writeln!(
        out,
        "{}peers: {}\n",
        if markdown { "#### " } else { "" },
        report.peers.status
    );
    let header = [
        "config",
        "peer",
        "what the peer does",
        "median",
        "spread",
        "p99",
        "ours (same run)",
        "our median",
        "ours ÷ peer",
    ];
    let mut rows = Vec::new();
    for p in &report.peers.rows {
        let mine = ours(report, p.config, &p.key);
        let first = |f: Option<&&Figure>| {
            f.map_or_else(
                || ("—".to_string(), "—".to_string(), "—".to_string()),
                |f| {
                    let ratio = f.median / p.median();
                    (
                        f.what.clone(),
                        format_value(f.unit, f.median),
                        format!("{ratio:.2}×"),
                    )
                },
            )
        };
        let mut iter = mine.iter();
        let (w, m, r) = first(iter.next());
        rows.push(vec![
            p.config.name().to_string(),
            p.peer.clone(),
            p.what.clone(),
            format_value(Unit::Micros, p.median()),
            format_spread(Unit::Micros, p.spread()),
            p.p99
                .map_or_else(|| "—".to_string(), |v| format_value(Unit::Micros, v)),
            w,
            m,
            r,
        ]);
        for f in iter {
            let (w, m, r) = first(Some(f));
            let mut row = vec![String::new(); 6];
            row.extend([w, m, r]);
            rows.push(row);
        }
    }
    for (config, why) in &report.peers.failed {
        let mut row = vec![
            config.name().to_string(),
            "—".into(),
            format!("not measured: {why}"),
        ];
        row.extend(std::iter::repeat("—".to_string()).take(6));
        rows.push(row);
    }
    out += &crate::report::pipe_table(&header, &rows);
    out += "\nours ÷ peer: our median divided by the peer's (both latencies); below 1 we are faster.\n\n";
    out
}

/// The peers as JSON.
pub fn to_json(peers: &Peers) -> Value {
    json!({
        "status": peers.status,
        "rows": peers.rows.iter().map(|p| json!({
            "config": p.config.name(),
            "key": p.key,
            "peer": p.peer,
            "what": p.what,
            "unit": "us",
            "median": p.median(),
            "spread": p.spread(),
            "trials": p.trials,
            "p99": p.p99,
        })).collect::<Vec<_>>(),
        "failed": peers.failed.iter().map(|(c, w)| json!({"config": c.name(), "why": w})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_peers_lines() {
        let text = "noise\n{\"key\":\"ipc-channel.round_trip\",\"peer\":\"ipc-channel 0.23\",\"what\":\"rt\",\"unit\":\"us\",\"trials\":[3.0,1.0,2.0],\"p99\":9.0}\n";
        let rows = parse(text, CpuConfig::OneCpu).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].median(), 2.0);
        assert_eq!(rows[0].spread(), (1.0, 3.0));
        assert!(parse("{\"key\":\"x\",\"trials\":[]}", CpuConfig::OneCpu).is_err());
    }
}
