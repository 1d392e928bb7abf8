//! A member's run loop: it looks at the registry under the lock, tracks who
//! lives by pidfd or `/proc`, and sleeps in `poll(2)` between looks.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use syncomm_common::duration::format_duration;
use syncomm_common::rundir::RunDir;
use syncomm_common::shutdown::Shutdown;
use syncomm_sys::pidfd::PidFd;
use syncomm_sys::proc::{Liveness, Stamp};

use crate::fds;
use crate::protocol::{decide, finished, Next, Phase};
use crate::registry::{self, Loaded, Locked, Paths, Registry, MAX_MEMBERS};
use crate::{Error, Found, Options};

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

/// A member of a group, from arrival to departure.
struct Member<'a> {
    opts: &'a Options,
    paths: Paths,
    me: Stamp,
    phase: Phase,
    inotify: Option<Inotify>,
    /// Whether the inotify watch was set up (or failed): only once a member
    /// has to wait. One that finds its group complete on arrival never
    /// creates one, and so never pays for closing it: the kernel waits for
    /// an RCU grace period when an inotify descriptor closes, 5–30 ms here.
    watch_tried: bool,
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
        if !self.watch_tried {
            self.watch_tried = true;
            self.inotify = watch(&self.paths.dir, self.report);
            // A change between the last look and the watch went unseen:
            // look again before sleeping.
            return Ok(None);
        }
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

/// An inotify watch on the runtime directory (the registry's changes), or
/// `None` after telling the user that we will look again now and then.
fn watch(dir: &Path, report: &dyn Fn(&str)) -> Option<Inotify> {
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
    match inotify {
        Ok(ino) => Some(ino),
        Err(e) => {
            report(&format!(
                "cannot watch {} with inotify ({e}); looking again every {}",
                dir.display(),
                format_duration(FALLBACK_RECHECK)
            ));
            None
        }
    }
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
    let me = Stamp::own().map_err(|source| Error::Sys {
        what: "reading our start time",
        source,
    })?;
    let mut member = Member {
        opts,
        paths,
        me,
        phase: Phase::Arriving,
        inotify: None,
        watch_tried: false,
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
            watch: member.inotify.take(),
        }),
        Err(e) => {
            if let Err(w) = member.withdraw() {
                report(&format!("could not remove our entry: {w}"));
            }
            Err(e)
        }
    }
}
