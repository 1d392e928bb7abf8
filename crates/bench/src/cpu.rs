//! Named CPU configurations: where every process of a figure runs.
//!
//! | configuration | the measuring side (this process's threads) | the other side (every process it starts, and server threads) |
//! |---|---|---|
//! | `one-cpu` | CPU A | CPU A: every wake is a context switch on one CPU |
//! | `two-cpus` | CPU A | CPU B: every wake crosses to the other CPU |
//! | `unpinned` | any CPU | any CPU: as users run it |
//!
//! A and B are the first two CPUs this process may run on when it starts
//! (0 and 1 on the reference machine). Pinning is inherited: a thread pinned
//! with [`pin_current_thread`] passes its mask to the threads and processes it
//! starts; [`pin_command`] pins a child before it runs its program, so that the
//! child's own threads and children (a pool's workers, a pipeline's stages)
//! are pinned too.

use std::process::Command;

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// One of the three configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum CpuConfig {
    /// Every process of the figure on the same CPU.
    OneCpu,
    /// The measuring side on one CPU, the other side on another.
    TwoCpus,
    /// No pinning.
    Unpinned,
}

impl CpuConfig {
    /// All three, in the order the tables show them.
    pub const ALL: [CpuConfig; 3] = [CpuConfig::OneCpu, CpuConfig::TwoCpus, CpuConfig::Unpinned];

    /// The name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            CpuConfig::OneCpu => "one-cpu",
            CpuConfig::TwoCpus => "two-cpus",
            CpuConfig::Unpinned => "unpinned",
        }
    }

    /// Parses [`CpuConfig::name`].
    pub fn parse(s: &str) -> Option<CpuConfig> {
        CpuConfig::ALL.into_iter().find(|c| c.name() == s)
    }

    /// One line: what the configuration pins where.
    pub fn describe(self, cpus: &Cpus) -> String {
        match self {
            CpuConfig::OneCpu => format!("every process on CPU {}", cpus.a),
            CpuConfig::TwoCpus => format!(
                "measuring side on CPU {}, the processes it starts on CPU {}",
                cpus.a,
                cpus.b.map_or_else(|| "?".to_string(), |b| b.to_string())
            ),
            CpuConfig::Unpinned => format!("no pinning (CPUs {:?})", cpus.all),
        }
    }
}

/// The CPUs this process may use, found once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus {
    /// Every CPU in the starting mask.
    pub all: Vec<usize>,
    /// CPU A: the first of them.
    pub a: usize,
    /// CPU B: the second, if there is one.
    pub b: Option<usize>,
}

impl Cpus {
    /// The calling thread's current mask.
    pub fn detect() -> Cpus {
        let all: Vec<usize> = sched_getaffinity(Pid::from_raw(0))
            .map(|set| {
                (0..CpuSet::count())
                    .filter(|&c| set.is_set(c).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        let all = if all.is_empty() { vec![0] } else { all };
        Cpus {
            a: all[0],
            b: all.get(1).copied(),
            all,
        }
    }

    /// The measuring side's CPUs in `config`.
    pub fn main_side(&self, config: CpuConfig) -> Vec<usize> {
        match config {
            CpuConfig::OneCpu | CpuConfig::TwoCpus => vec![self.a],
            CpuConfig::Unpinned => self.all.clone(),
        }
    }

    /// The other side's CPUs in `config` (`None`: two-cpus on a one-CPU machine).
    pub fn peer_side(&self, config: CpuConfig) -> Option<Vec<usize>> {
        match config {
            CpuConfig::OneCpu => Some(vec![self.a]),
            CpuConfig::TwoCpus => self.b.map(|b| vec![b]),
            CpuConfig::Unpinned => Some(self.all.clone()),
        }
    }
}

/// `0,1` for the environment variables the peers read.
pub fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn set_of(cpus: &[usize]) -> nix::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c)?;
    }
    Ok(set)
}

/// Pins the calling thread (and so whatever it starts from now on) to `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> nix::Result<()> {
    sched_setaffinity(Pid::from_raw(0), &set_of(cpus)?)
}

/// Pins the process `cmd` starts to `cpus`, before it runs its program.
///
/// When the calling thread is already pinned to exactly `cpus`, the child
/// inherits that and nothing is added: a `pre_exec` hook makes std start the
/// child with `fork` instead of `posix_spawn`'s `vfork`, which costs the
/// bench's whole address space (about 0.5 ms here) and would be charged to
/// whichever side of a comparison had the hook. So pin a command once: a
/// second call that adds nothing cannot undo a first one's hook.
pub fn pin_command(cmd: &mut Command, cpus: &[usize]) {
    use std::os::unix::process::CommandExt;
    let set = set_of(cpus);
    if let (Ok(want), Ok(have)) = (&set, sched_getaffinity(Pid::from_raw(0))) {
        if *want == have {
            return;
        }
    }
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // one raw system call (sched_setaffinity) on a CpuSet built before the
    // fork (a plain bit array copied into the closure): no allocation, no
    // locks, nothing that is not async-signal-safe.
    unsafe {
        cmd.pre_exec(move || match &set {
            Ok(set) => sched_setaffinity(Pid::from_raw(0), set).map_err(std::io::Error::from),
            Err(e) => Err(std::io::Error::from(*e)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sides() {
        for c in CpuConfig::ALL {
            assert_eq!(CpuConfig::parse(c.name()), Some(c));
        }
        let cpus = Cpus {
            all: vec![0, 1],
            a: 0,
            b: Some(1),
        };
        assert_eq!(cpus.main_side(CpuConfig::OneCpu), [0]);
        assert_eq!(cpus.peer_side(CpuConfig::OneCpu), Some(vec![0]));
        assert_eq!(cpus.peer_side(CpuConfig::TwoCpus), Some(vec![1]));
        assert_eq!(cpus.peer_side(CpuConfig::Unpinned), Some(vec![0, 1]));
        assert_eq!(list(&[0, 1]), "0,1");
    }

    #[test]
    fn a_pinned_child_runs_on_its_cpu() {
        let cpus = Cpus::detect();
        let mut cmd = Command::new("grep");
        cmd.args(["Cpus_allowed_list", "/proc/self/status"]);
        pin_command(&mut cmd, &[cpus.a]);
        let out = cmd.output().expect("grep runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.split_whitespace().last(),
            Some(cpus.a.to_string().as_str())
        );
    }
}
