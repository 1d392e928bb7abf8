//! # syncomm-discover
//!
//! Processes started in any order, in separate shells, find each other and
//! meet: each leaves its id in a registry file and waits until M live members
//! are present, then all print the same list. The seed's Python version spins
//! on the file; this one sleeps in `poll(2)` until something changes.
//!
//! ## The mechanism
//! - **Registry** ([`registry`]): a small text file per rendezvous name,
//!   replaced whole by `rename(2)` under an exclusive `flock(2)` on a lock file,
//!   so readers never see half a file and a member killed mid-update leaves
//!   nothing broken.
//! - **Liveness** (`syncomm_sys::proc::Stamp`): each entry holds the member's pid and process
//!   start time; whoever next updates the registry prunes entries whose process
//!   is gone or whose pid now belongs to another process.
//! - **Waiting**: `poll(2)` on an inotify descriptor watching the runtime
//!   directory (another member changed the registry), one pidfd per other
//!   member (a member died: a dead process writes nothing, so only its pidfd
//!   can tell), and the SIGINT/SIGTERM wake-up descriptor, bounded by
//!   `--timeout`. Each wake-up re-reads the registry; no spinning. Members
//!   beyond the descriptor budget ([`fds`]) are checked in `/proc` now and
//!   then instead; one whose state cannot be read is never taken for dead.
//! - **Barrier**: the member whose arrival makes M fixes the group in the
//!   registry (`group a b c`). Then each member marks itself `seen`. The one
//!   whose mark makes everyone `seen` removes the registry and lock files; the
//!   others wake on that removal and leave, knowing the barrier completed
//!   (only a finished group is ever cleared away). So nobody leaves before all
//!   have seen the group, and the next group under the same name starts afresh.
//!   A member arriving while a group is finishing waits for the next group.
//!
//! ## Guarantees
//! - All members of a group print the same sorted list: it is fixed once, in
//!   the registry, by the member that completed the group.
//! - A member killed before the group is complete is pruned; a replacement may
//!   take its id, and the group completes. A member killed after the group is
//!   complete does not hold up the others' barrier.
//! - The same id twice while its first holder lives is refused.
//! - On `--timeout` or SIGINT/SIGTERM a member removes its entry before it exits.
//!
//! ## Modules
//! - [`id`]: member ids and their natural order.
//! - liveness: pid + start time and pidfds, from `syncomm_sys` (`proc`, `pidfd`).
//! - [`registry`]: the file format, atomic replacement, the lock.
#![deny(missing_docs)]

pub mod fds;
pub mod id;
pub mod registry;

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use syncomm_common::duration::format_duration;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_common::Name;

pub use id::{IdError, MemberId};
use registry::{Entry, FileError, Loaded, Locked, Paths, Registry, MAX_MEMBERS};
use syncomm_sys::pidfd::PidFd;
use syncomm_sys::proc::{Liveness, Stamp};

/// How often to look again when the kernel cannot notify us (no inotify
/// instance left, or no pidfd support).
const FALLBACK_RECHECK: Duration = Duration::from_millis(50);

/// Members checked in `/proc` rather than by pidfd (beyond the descriptor
/// budget) are each read at most once per this much time per member of
/// theirs, so that a member holding many of them spends a bounded effort:
/// 20 such members are read every 100 ms, 400 every 2 s.
const RECHECK_PER_MEMBER: Duration = Duration::from_millis(5);

/// The longest interval between two `/proc` checks of a member.
const RECHECK_MAX: Duration = Duration::from_secs(2);

/// How long a member that gave up waits for the lock to remove its entry.
const WITHDRAW_GRACE: Duration = Duration::from_secs(2);

/// What a member asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The rendezvous name.
    pub name: Name,
    /// Our id.
    pub id: MemberId,
    /// M, the group size.
    pub members: usize,
    /// Give up after this long.
    pub timeout: Option<Duration>,
}

/// A group met: every member prints the same `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Our id.
    pub id: MemberId,
    /// All M ids, sorted.
    pub group: Vec<MemberId>,
}

/// A live member as `--list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// Its id.
    pub id: String,
    /// Its pid.
    pub pid: i32,
    /// `waiting` or `seen`.
    pub state: &'static str,
}

/// The registry of a name as `--list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// M (0 when nobody is registered).
    pub members: usize,
    /// Whether the group is complete and finishing.
    pub closed: bool,
    /// The live members.
    pub live: Vec<Listed>,
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--members` out of range.
    #[error("--members {0} is out of range (1 to {MAX_MEMBERS})")]
    BadMembers(usize),
    /// Our id is held by a live process.
    #[error("id {id} is already taken by pid {pid}, which is still running; choose another --as")]
    IdTaken {
        /// The id.
        id: MemberId,
        /// Its holder.
        pid: i32,
    },
    /// The registry is for another group size.
    #[error("group {name} is waiting for {have} members, not {want}; use --members {have} or another --name")]
    Mismatch {
        /// The name.
        name: Name,
        /// M in the registry.
        have: usize,
        /// M asked for.
        want: usize,
    },
    /// Our own entry disappeared (the registry was removed or replaced by hand).
    #[error("our entry {id} vanished from the registry {path} (was it removed by hand?)")]
    Vanished {
        /// Our id.
        id: MemberId,
        /// The registry.
        path: PathBuf,
    },
    /// `--timeout` passed.
    #[error("timed out after {after}: {waiting}")]
    Timeout {
        /// The timeout.
        after: String,
        /// What we were waiting for.
        waiting: String,
    },
    /// SIGINT or SIGTERM.
    #[error("interrupted by {}: {waiting}", signal.as_str())]
    Interrupted {
        /// The signal.
        signal: Signal,
        /// What we were waiting for.
        waiting: String,
    },
    /// A registry or lock file problem.
    #[error("registry: {0}")]
    File(#[from] FileError),
    /// Some other system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What failed.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    /// The exit code this error maps to: 2 for a usage error, 128+N for a
    /// member stopped by signal N (as a shell reports a death by that
    /// signal), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::BadMembers(_) => 2,
            Error::Interrupted { signal, .. } => 128 + *signal as u8,
            _ => 1,
        }
    }
}

/// What a member is waiting for, in words (for timeout and interrupt messages).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    /// A previous group under this name is still finishing.
    GroupFinishing { present: usize },
    /// Fewer than M members are present.
    Members { present: Vec<MemberId>, want: usize },
    /// The group is complete; some have not yet seen it.
    Barrier { unseen: Vec<MemberId> },
}

impl Waiting {
    fn describe(&self, name: &Name) -> String {
        let list = |ids: &[MemberId]| {
            ids.iter()
                .map(MemberId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Waiting::GroupFinishing { present } => format!(
                "group {name} was complete and still has {present} members finishing; we were not let in"
            ),
            Waiting::Members { present, want } => format!(
                "only {} of {want} members of {name} arrived ({})",
                present.len(),
                list(present)
            ),
            Waiting::Barrier { unseen } => format!(
                "group {name} was complete but {} had not yet seen it",
                list(unseen)
            ),
        }
    }
}

/// The outcome of looking at the registry once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// The group met and we have left the registry.
    Done(Vec<MemberId>),
    /// Wait for a change; `others` are the members whose death would be one.
    Wait { others: Vec<Stamp>, why: Waiting },
}

/// Where a member is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Not in the registry yet.
    Arriving,
    /// Registered, waiting for M members.
    Joined,
    /// Has seen the complete group (and marked itself `seen`).
    Seen(Vec<MemberId>),
}

/// Whether `reg` holds a finished group: complete, and every member still
/// registered has seen it. Then nobody needs the registry any more.
fn finished(reg: &Registry) -> bool {
    reg.is_closed() && reg.entries.iter().all(|e| e.seen)
}

/// One look at the registry: the whole protocol as a pure decision, given
/// the registry's contents and who lives. Returns the registry to write back
/// (when it changed; an empty one means "remove the files") and what to do next.
///
/// 1. Prune members that died. A finished group is cleared away.
/// 2. Arriving: refuse an id a live member holds; wait while a complete group
///    finishes; else join. The member whose arrival makes M fixes the group.
/// 3. Once the group is fixed, mark ourselves `seen`.
/// 4. The member whose mark completes the barrier (everyone has seen) removes
///    the registry. A member that has seen, and finds its entry gone, knows
///    the barrier completed: only a finished group is ever cleared.
fn decide(
    loaded: Option<Registry>,
    opts: &Options,
    me: Stamp,
    phase: &mut Phase,
    alive: impl Fn(&Stamp) -> bool,
) -> Result<(Option<Registry>, Next), Error> {
    let mut reg = loaded.unwrap_or_else(|| Registry::new(opts.members));
    let before = reg.entries.len();
    reg.entries.retain(|e| e.stamp == me || alive(&e.stamp));
    let mut changed = reg.entries.len() != before;
    if finished(&reg) && !reg.entries.is_empty() {
        reg.entries.clear();
        changed = true;
    }
    if reg.entries.is_empty() && (reg.members != opts.members || reg.is_closed()) {
        // Nobody left: the next group starts afresh.
        reg = Registry::new(opts.members);
    }
    let others = |reg: &Registry| -> Vec<Stamp> {
        reg.entries
            .iter()
            .map(|e| e.stamp)
            .filter(|s| *s != me)
            .collect()
    };

    if *phase == Phase::Arriving {
        if let Some(e) = reg.entry(&opts.id) {
            return Err(Error::IdTaken {
                id: opts.id.clone(),
                pid: e.stamp.pid,
            });
        }
        if reg.is_closed() {
            let why = Waiting::GroupFinishing {
                present: reg.entries.len(),
            };
            let others = others(&reg);
            return Ok((changed.then_some(reg), Next::Wait { others, why }));
        }
        if reg.members != opts.members {
            return Err(Error::Mismatch {
                name: opts.name.clone(),
                have: reg.members,
                want: opts.members,
            });
        }
        reg.entries.push(Entry {
            id: opts.id.clone(),
            stamp: me,
            seen: false,
        });
        if reg.entries.len() == reg.members {
            let mut group: Vec<MemberId> = reg.entries.iter().map(|e| e.id.clone()).collect();
            group.sort();
            reg.group = Some(group);
        }
        changed = true;
        *phase = Phase::Joined;
    }

    match reg.entries.iter().position(|e| e.stamp == me) {
        Some(pos) => {
            if let Some(group) = &reg.group {
                if !reg.entries[pos].seen {
                    reg.entries[pos].seen = true;
                    changed = true;
                }
                *phase = Phase::Seen(group.clone());
            }
        }
        // Our entry is gone although we live: the group finished (only a
        // finished group is cleared), or someone removed it by hand.
        None => {
            return match phase {
                Phase::Seen(group) => Ok((changed.then_some(reg), Next::Done(group.clone()))),
                _ => Err(Error::Vanished {
                    id: opts.id.clone(),
                    path: PathBuf::new(),
                }),
            };
        }
    }

    let why = match phase {
        Phase::Seen(group) if finished(&reg) => {
            // Our mark completed the barrier: we clear the registry away.
            reg.entries.clear();
            return Ok((Some(reg), Next::Done(group.clone())));
        }
        Phase::Seen(_) => {
            let mut unseen: Vec<MemberId> = reg
                .entries
                .iter()
                .filter(|e| !e.seen)
                .map(|e| e.id.clone())
                .collect();
            unseen.sort();
            Waiting::Barrier { unseen }
        }
        _ => {
            let mut present: Vec<MemberId> = reg.entries.iter().map(|e| e.id.clone()).collect();
            present.sort();
            Waiting::Members {
                present,
                want: reg.members,
            }
        }
    };
    let others = others(&reg);
    Ok((changed.then_some(reg), Next::Wait { others, why }))
}

/// A member of a group, from arrival to departure.
struct Member<'a> {
    opts: &'a Options,
    paths: Paths,
    me: Stamp,
    phase: Phase,
    inotify: Option<Inotify>,
    pidfds: HashMap<Stamp, PidFd>,
    /// Whether some member could not get a pidfd (then we look again now and then).
    pidfd_missing: bool,
    /// How many pidfds we may hold ([`fds::pidfd_budget`]).
    pidfd_budget: usize,
    /// Members without a pidfd, and when `/proc` last showed them alive.
    checked: HashMap<Stamp, Instant>,
    deadline: Option<Instant>,
    shutdown: &'a Shutdown,
    report: &'a dyn Fn(&str),
}

impl Member<'_> {
    /// Reads the registry; a corrupt one is moved aside (only with the lock held).
    fn load(&self, locked: bool) -> Result<Option<Option<Registry>>, Error> {
        match registry::read(&self.paths)? {
            Loaded::Missing => Ok(Some(None)),
            Loaded::Found(reg) => Ok(Some(Some(reg))),
            Loaded::Corrupt(_) if !locked => Ok(None),
            Loaded::Corrupt(why) => {
                registry::quarantine(&self.paths)?;
                (self.report)(&format!(
                    "registry {} was corrupt ({why}); moved it to {} and started a new one",
                    self.paths.registry.display(),
                    self.paths.corrupt.display()
                ));
                Ok(Some(None))
            }
        }
    }

    /// One look: first without the lock (most wake-ups change nothing for
    /// us), then, if the registry must change, again under the lock.
    fn step(&mut self) -> Result<Next, Error> {
        if let Some(loaded) = self.load(false)? {
            let mut phase = self.phase.clone();
            let (write, next) = self.decide(loaded, &mut phase)?;
            if write.is_none() {
                return Ok(next);
            }
        }
        let lock = self.lock()?;
        let loaded = self.load(true)?.flatten();
        let absent = loaded.is_none();
        let mut phase = self.phase.clone();
        let decided = self.decide(loaded, &mut phase);
        if let Ok((Some(reg), _)) = &decided {
            registry::write(&self.paths, reg)?;
        }
        // When nobody is registered any more, the lock file goes too, and
        // that includes a lock file our own lock() just created: a member
        // that found a departing member dead and came to clear the finished
        // group, while another member had already cleared it and removed the
        // lock file, re-creates the lock file in lock() and finds no
        // registry; it must not leave that file behind.
        let nobody = match &decided {
            Ok((Some(reg), _)) => reg.entries.is_empty(),
            _ => absent,
        };
        if nobody {
            lock.remove_file()?;
        }
        let (_, next) = decided?;
        self.phase = phase;
        Ok(next)
    }

    fn decide(
        &mut self,
        loaded: Option<Registry>,
        phase: &mut Phase,
    ) -> Result<(Option<Registry>, Next), Error> {
        let dead = match &loaded {
            Some(reg) => self.dead_members(reg),
            None => HashSet::new(),
        };
        let alive = |s: &Stamp| !dead.contains(s);
        decide(loaded, self.opts, self.me, phase, alive).map_err(|e| match e {
            Error::Vanished { id, .. } => Error::Vanished {
                id,
                path: self.paths.registry.clone(),
            },
            e => e,
        })
    }

    /// Which registered members are dead. Each other member's pidfd is opened
    /// once, and its start time checked once, right after the open (a pidfd
    /// pins the process, so a pid reused later cannot fool it); from then on
    /// one `poll(2)` over all pidfds, not waiting, tells who has exited.
    ///
    /// Members beyond the descriptor budget ([`fds`]), or for which no pidfd
    /// can be had (no pidfd support, no descriptor left), are checked by pid
    /// and start time in `/proc` at each look, and looks then come at least
    /// every [`FALLBACK_RECHECK`]. A member whose state cannot be read at all
    /// is *not* dead: "cannot tell" is never taken for "gone".
    fn dead_members(&mut self, reg: &Registry) -> HashSet<Stamp> {
        let mut dead = HashSet::new();
        let present = |s: &Stamp| reg.entries.iter().any(|e| e.stamp == *s);
        self.pidfds.retain(|s, _| present(s));
        self.checked.retain(|s, _| present(s));
        let recheck = self.recheck_every();
        for e in &reg.entries {
            let s = e.stamp;
            if s == self.me || self.pidfds.contains_key(&s) {
                continue;
            }
            if self.checked.get(&s).is_some_and(|t| t.elapsed() < recheck) {
                continue; // seen alive lately; its next check is due later
            }
            let fd = if self.pidfds.len() < self.pidfd_budget {
                match PidFd::open(nix::unistd::Pid::from_raw(s.pid)) {
                    Ok(fd) => Some(fd),
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                        self.checked.remove(&s);
                        dead.insert(s);
                        continue;
                    }
                    // ENOSYS, EMFILE, ENFILE...: fall back to /proc.
                    Err(_) => None,
                }
            } else {
                None
            };
            match (s.liveness(), fd) {
                (Liveness::Dead, _) => {
                    self.checked.remove(&s);
                    dead.insert(s);
                }
                (Liveness::Alive, Some(fd)) => {
                    self.checked.remove(&s);
                    self.pidfds.insert(s, fd);
                }
                (Liveness::Alive, None) => {
                    self.checked.insert(s, Instant::now());
                }
                // Cannot tell: not dead. Checked again at the next look.
                (Liveness::Unknown(_), _) => {}
            }
        }
        self.pidfd_missing = self.others_in(reg).any(|s| !self.pidfds.contains_key(&s));
        let stamps: Vec<Stamp> = self.pidfds.keys().copied().collect();
        let mut fds: Vec<PollFd<'_>> = stamps
            .iter()
            .map(|s| PollFd::new(self.pidfds[s].as_fd(), PollFlags::POLLIN))
            .collect();
        if !fds.is_empty() && nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0 {
            for (s, fd) in stamps.iter().zip(&fds) {
                if fd.any().unwrap_or(false) {
                    dead.insert(*s);
                }
            }
        }
        dead
    }

    /// The other members in `reg`.
    fn others_in<'r>(&self, reg: &'r Registry) -> impl Iterator<Item = Stamp> + 'r {
        let me = self.me;
        reg.entries
            .iter()
            .map(|e| e.stamp)
            .filter(move |s| *s != me)
    }

    /// How often members without a pidfd are checked in `/proc`.
    fn recheck_every(&self) -> Duration {
        let n = u32::try_from(self.checked.len()).unwrap_or(u32::MAX);
        (RECHECK_PER_MEMBER.saturating_mul(n)).clamp(FALLBACK_RECHECK, RECHECK_MAX)
    }

    /// Takes the registry lock, bounded by the deadline and shutdown signals.
    fn lock(&self) -> Result<Locked, Error> {
        match Locked::take_within(&self.paths, self.deadline, self.shutdown)? {
            Some(lock) => Ok(lock),
            None => {
                let holder = registry::lock_holder(&self.paths)
                    .map_or("another process".to_owned(), |pid| format!("pid {pid}"));
                let waiting = format!(
                    "the registry lock {} is held by {holder}, which does not release it (is it stopped?)",
                    self.paths.lock.display()
                );
                Err(self.gave_up(self.ended_by(), waiting))
            }
        }
    }

    /// Why a bounded wait ended without its event.
    fn ended_by(&self) -> WaitEnd {
        if self.shutdown.requested() {
            WaitEnd::Signal
        } else {
            WaitEnd::Timeout
        }
    }

    /// The error for a wait that ended by the deadline or a signal.
    fn gave_up(&self, end: WaitEnd, waiting: String) -> Error {
        match end {
            WaitEnd::Timeout => Error::Timeout {
                after: format_duration(self.opts.timeout.unwrap_or_default()),
                waiting,
            },
            WaitEnd::Signal => {
                self.shutdown.drain();
                Error::Interrupted {
                    // A shutdown requested without a signal counts as SIGTERM.
                    signal: self
                        .shutdown
                        .signal()
                        .and_then(|s| Signal::try_from(s).ok())
                        .unwrap_or(Signal::SIGTERM),
                    waiting,
                }
            }
        }
    }

    /// Sleeps in `poll(2)` until the registry changes, another member dies,
    /// a shutdown signal arrives, or the deadline passes.
    fn wait(&mut self, others: &[Stamp]) -> Result<Option<WaitEnd>, Error> {
        // The last look opened a pidfd for every other member (dead_members).
        self.pidfds.retain(|s, _| others.contains(s));
        let fallback = self.inotify.is_none() || self.pidfd_missing;
        loop {
            if self.shutdown.requested() {
                return Ok(Some(WaitEnd::Signal));
            }
            let mut limit = self
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            if fallback {
                // Without inotify, the registry itself must be re-read often;
                // with it, only the members without a pidfd need a look.
                let every = if self.inotify.is_none() {
                    FALLBACK_RECHECK
                } else {
                    self.recheck_every()
                };
                limit = Some(limit.map_or(every, |l| l.min(every)));
            }
            let timeout = match limit {
                None => PollTimeout::NONE,
                // Round up, so we never wake a hair before the deadline and spin.
                Some(l) => PollTimeout::try_from(
                    l.as_millis().saturating_add(1).min(i32::MAX as u128) as i32,
                )
                .unwrap_or(PollTimeout::MAX),
            };
            let mut fds = vec![PollFd::new(self.shutdown.wake_fd(), PollFlags::POLLIN)];
            if let Some(ino) = &self.inotify {
                fds.push(PollFd::new(ino.as_fd(), PollFlags::POLLIN));
            }
            fds.extend(
                self.pidfds
                    .values()
                    .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
            );
            let ready = match nix::poll::poll(&mut fds, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Sys {
                        what: "poll",
                        source: e.into(),
                    })
                }
            };
            let fired: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(false)).collect();
            drop(fds);
            if fired[0] || self.shutdown.requested() {
                return Ok(Some(WaitEnd::Signal));
            }
            let first_pidfd = if self.inotify.is_some() { 2 } else { 1 };
            if fired[first_pidfd..].iter().any(|f| *f) {
                return Ok(None); // a member died: look again (and prune it)
            }
            if self.inotify.is_some() && fired[1] && self.registry_changed() {
                return Ok(None);
            }
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Some(WaitEnd::Timeout));
            }
            if ready == 0 && fallback {
                return Ok(None);
            }
        }
    }

    /// Reads the queued inotify events: did any concern the registry file?
    /// (The temp file, the lock file and other names' files share the directory.)
    fn registry_changed(&self) -> bool {
        let Some(ino) = &self.inotify else {
            return true;
        };
        let mut changed = false;
        while let Ok(events) = ino.read_events() {
            if events.is_empty() {
                break;
            }
            changed |= events.iter().any(|e| {
                e.mask
                    .intersects(AddWatchFlags::IN_Q_OVERFLOW | AddWatchFlags::IN_IGNORED)
                    || e.name.as_deref() == Some(self.paths.registry_file_name())
            });
        }
        changed
    }

    /// Removes our entry (after a timeout or a signal). The deadline has
    /// passed, so the lock gets a short grace of its own; if even that is not
    /// enough, the entry is pruned as dead once we have exited.
    fn withdraw(&mut self) -> Result<(), Error> {
        if self.phase == Phase::Arriving {
            return Ok(());
        }
        let grace = Some(Instant::now() + WITHDRAW_GRACE);
        let Some(lock) = Locked::take_within(&self.paths, grace, self.shutdown)? else {
            return Err(Error::Sys {
                what: "taking the registry lock",
                source: io::Error::other(
                    "it stays held; our entry will be pruned as dead once we have exited",
                ),
            });
        };
        match registry::read(&self.paths)? {
            Loaded::Found(mut reg) => {
                let before = reg.entries.len();
                reg.entries.retain(|e| e.stamp != self.me);
                if finished(&reg) {
                    // We were the last one the others waited for.
                    reg.entries.clear();
                }
                if reg.entries.len() != before {
                    registry::write(&self.paths, &reg)?;
                    if reg.entries.is_empty() {
                        lock.remove_file()?;
                    }
                }
            }
            // Nobody is registered: no lock file either (we may have just
            // re-created it).
            Loaded::Missing => lock.remove_file()?,
            Loaded::Corrupt(_) => {}
        }
        self.phase = Phase::Arriving;
        Ok(())
    }
}

enum WaitEnd {
    Timeout,
    Signal,
}

/// Joins the group `opts.name` (its registry in `dir`), waits until M live
/// members are present and all have seen each other, and returns the group.
/// `report` receives notices worth showing the user (a repaired registry).
pub fn discover(
    dir: &RunDir,
    opts: &Options,
    shutdown: &Shutdown,
    report: &dyn Fn(&str),
) -> Result<Found, Error> {
    if !(1..=MAX_MEMBERS).contains(&opts.members) {
        return Err(Error::BadMembers(opts.members));
    }
    let dir = dir.path();
    let paths = Paths::in_dir(dir, &opts.name);
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    // Watch before the first read, so no change after that read goes unseen.
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|ino| {
        ino.add_watch(
            dir,
            AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM,
        )?;
        Ok(ino)
    });
    let inotify = match inotify {
        Ok(ino) => Some(ino),
        Err(e) => {
            report(&format!(
                "cannot watch {} with inotify ({e}); looking again every {}",
                dir.display(),
                format_duration(FALLBACK_RECHECK)
            ));
            None
        }
    };
    let me = Stamp::own().map_err(|source| Error::Sys {
        what: "reading our start time",
        source,
    })?;
    let mut member = Member {
        opts,
        paths,
        me,
        phase: Phase::Arriving,
        inotify,
        pidfds: HashMap::new(),
        pidfd_missing: false,
        pidfd_budget: fds::pidfd_budget(),
        checked: HashMap::new(),
        deadline,
        shutdown,
        report,
    };
    let outcome = (|| loop {
        match member.step()? {
            Next::Done(group) => return Ok(group),
            Next::Wait { others, why } => {
                if let Some(end) = member.wait(&others)? {
                    return Err(member.gave_up(end, why.describe(&opts.name)));
                }
            }
        }
    })();
    match outcome {
        Ok(group) => Ok(Found {
            id: opts.id.clone(),
            group,
        }),
        Err(e) => {
            if let Err(w) = member.withdraw() {
                report(&format!("could not remove our entry: {w}"));
            }
            Err(e)
        }
    }
}

/// The live members registered under `name` (read-only: nothing is pruned).
pub fn list(dir: &RunDir, name: &Name) -> Result<Listing, Error> {
    let paths = Paths::in_dir(dir.path(), name);
    let reg = match registry::read(&paths)? {
        Loaded::Missing => Registry::new(0),
        Loaded::Found(reg) => reg,
        Loaded::Corrupt(why) => {
            return Err(Error::File(FileError::Io {
                what: "parse",
                path: paths.registry,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{why} (the next member to arrive will move it aside)"),
                ),
            }))
        }
    };
    // A member whose state cannot be read is listed: only the known dead are not.
    let mut live: Vec<&Entry> = reg
        .entries
        .iter()
        .filter(|e| !matches!(e.stamp.liveness(), Liveness::Dead))
        .collect();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Listing {
        members: if live.is_empty() { 0 } else { reg.members },
        closed: reg.is_closed() && !live.is_empty(),
        live: live
            .into_iter()
            .map(|e| Listed {
                id: e.id.to_string(),
                pid: e.stamp.pid,
                state: if e.seen { "seen" } else { "waiting" },
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(id: &str, members: usize) -> Options {
        Options {
            name: Name::default(),
            id: MemberId::new(id).unwrap(),
            members,
            timeout: None,
        }
    }

    fn stamp(pid: i32) -> Stamp {
        Stamp { pid, start: 1 }
    }

    /// One look for member `id` (`pid`); returns the registry after it
    /// (`None`: removed) and the outcome.
    fn look(
        reg: Option<Registry>,
        id: &str,
        pid: i32,
        m: usize,
        phase: &mut Phase,
        dead: &[i32],
    ) -> (Option<Registry>, Result<Next, String>) {
        let alive = |s: &Stamp| !dead.contains(&s.pid);
        match decide(reg.clone(), &opts(id, m), stamp(pid), phase, alive) {
            Ok((Some(w), next)) if w.entries.is_empty() => (None, Ok(next)),
            Ok((w, next)) => (w.or(reg), Ok(next)),
            Err(e) => (reg, Err(e.to_string())),
        }
    }

    fn ids(group: &[MemberId]) -> Vec<&str> {
        group.iter().map(|i| i.as_str()).collect()
    }

    #[test]
    fn three_meet_and_the_last_to_see_clears_the_registry() {
        let (mut pa, mut pb, mut pc) = (Phase::Arriving, Phase::Arriving, Phase::Arriving);
        let (r, n) = look(None, "a", 1, 3, &mut pa, &[]);
        assert!(matches!(
            n,
            Ok(Next::Wait {
                why: Waiting::Members { .. },
                ..
            })
        ));
        let (r, _) = look(r, "c", 3, 3, &mut pc, &[]);
        let (r, n) = look(r, "b", 2, 3, &mut pb, &[]);
        // b completed the group and has seen it; a and c have not yet.
        assert_eq!(
            ids(r.as_ref().unwrap().group.as_ref().unwrap()),
            ["a", "b", "c"]
        );
        assert!(matches!(
            n,
            Ok(Next::Wait {
                why: Waiting::Barrier { .. },
                ..
            })
        ));
        let (r, n) = look(r, "a", 1, 3, &mut pa, &[]);
        assert!(matches!(
            n,
            Ok(Next::Wait {
                why: Waiting::Barrier { .. },
                ..
            })
        ));
        // c's mark completes the barrier: c clears the registry and goes.
        let (r, n) = look(r, "c", 3, 3, &mut pc, &[]);
        assert!(matches!(n, Ok(Next::Done(_))));
        assert!(r.is_none(), "the last to see removes the registry");
        // a and b find their entries gone: the group finished.
        for (id, pid, phase) in [("a", 1, &mut pa), ("b", 2, &mut pb)] {
            let (_, n) = look(None, id, pid, 3, phase, &[]);
            let Ok(Next::Done(g)) = n else {
                panic!("{id}: {n:?}")
            };
            assert_eq!(ids(&g), ["a", "b", "c"]);
        }
    }

    #[test]
    fn dead_are_pruned_and_replaced_and_duplicates_refused() {
        let (mut pa, mut pdup, mut pa2) = (Phase::Arriving, Phase::Arriving, Phase::Arriving);
        let (r, _) = look(None, "a", 1, 2, &mut pa, &[]);
        let (r2, n) = look(r.clone(), "a", 9, 2, &mut pdup, &[]);
        assert!(n.unwrap_err().contains("already taken by pid 1"));
        assert!(r2 == r);
        // a dies; a replacement takes its id.
        let (r, n) = look(r, "a", 5, 2, &mut pa2, &[1]);
        assert!(matches!(n, Ok(Next::Wait { .. })), "{n:?}");
        assert_eq!(r.as_ref().unwrap().entries.len(), 1);
        assert_eq!(r.as_ref().unwrap().entries[0].stamp.pid, 5);
    }

    #[test]
    fn a_member_dead_before_seeing_does_not_hold_the_barrier() {
        let (mut pa, mut pb, mut pc) = (Phase::Arriving, Phase::Arriving, Phase::Arriving);
        let (r, _) = look(None, "a", 1, 3, &mut pa, &[]);
        let (r, _) = look(r, "b", 2, 3, &mut pb, &[]);
        let (r, _) = look(r, "c", 3, 3, &mut pc, &[]);
        // b dies before it saw the group; a's look prunes it and finishes.
        let (r, n) = look(r, "a", 1, 3, &mut pa, &[2]);
        let Ok(Next::Done(g)) = n else {
            panic!("{n:?}")
        };
        assert_eq!(ids(&g), ["a", "b", "c"]);
        assert!(r.is_none());
        let (_, n) = look(None, "c", 3, 3, &mut pc, &[2]);
        assert!(matches!(n, Ok(Next::Done(_))));
    }

    #[test]
    fn a_newcomer_waits_while_a_group_finishes_and_sizes_must_agree() {
        let (mut pa, mut pb, mut pc, mut px) = (
            Phase::Arriving,
            Phase::Arriving,
            Phase::Arriving,
            Phase::Arriving,
        );
        let (r, _) = look(None, "a", 1, 3, &mut pa, &[]);
        let (r, _) = look(r, "b", 2, 3, &mut pb, &[]);
        let (r, n) = look(r.clone(), "y", 8, 2, &mut Phase::Arriving, &[]);
        assert!(n.unwrap_err().contains("waiting for 3 members, not 2"));
        let (r, _) = look(r, "c", 3, 3, &mut pc, &[]);
        // The group is complete; a and b have not seen it yet: x must wait.
        let (r, n) = look(r, "x", 7, 3, &mut px, &[]);
        assert!(matches!(
            n,
            Ok(Next::Wait {
                why: Waiting::GroupFinishing { .. },
                ..
            })
        ));
        assert_eq!(px, Phase::Arriving);
        // Once every member of the finished group is gone, x starts the next one.
        let (r, n) = look(r, "x", 7, 4, &mut px, &[1, 2, 3]);
        assert!(matches!(
            n,
            Ok(Next::Wait {
                why: Waiting::Members { .. },
                ..
            })
        ));
        assert_eq!(r.unwrap().members, 4);
    }

    #[test]
    fn a_lone_member_meets_itself() {
        let mut p = Phase::Arriving;
        let (r, n) = look(None, "solo", 1, 1, &mut p, &[]);
        let Ok(Next::Done(g)) = n else {
            panic!("{n:?}")
        };
        assert_eq!(ids(&g), ["solo"]);
        assert!(r.is_none());
    }
}
