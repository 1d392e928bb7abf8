//! Which descriptors are ready: one `epoll` set, kept in step with what each
//! descriptor waits for.
//!
//! Every descriptor is registered once, when the loop first watches it, and
//! changed (`epoll_ctl`) only when what it waits for changes: a caller held
//! back stops being read, a caller with answers not yet sent waits for room,
//! a child's full stdin pipe waits for room. A call that goes through without
//! back-pressure therefore costs two `epoll_wait`s and no `epoll_ctl`
//! (`poll(2)` would register every descriptor again on each wait). A
//! descriptor leaves the set when it is closed (its connection or child is
//! dropped), so nothing is deregistered by hand.
//!
//! The level-triggered mode keeps the meaning `poll(2)` had: a descriptor is
//! reported on every wait while it is ready, and hang-ups and errors are
//! reported even when it waits for nothing.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use syncomm_common::shutdown::Shutdown;

use super::config::io_err;
use super::{ServeError, Server};

/// What a ready descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// The shutdown descriptor (SIGINT / SIGTERM arrived).
    Wake,
    /// The listening socket (a caller is waiting to connect).
    Listener,
    /// A caller's connection, by connection id.
    Conn(u64),
    /// A child's stdout (answers), by the child's serial number.
    WorkerOut(u64),
    /// A child's stdin (room for requests), by the child's serial number.
    WorkerIn(u64),
}

/// The kind of source in the top byte of an event's token, its id below.
const KIND_SHIFT: u32 = 56;
const ID_MASK: u64 = (1 << KIND_SHIFT) - 1;

impl Source {
    fn token(self) -> u64 {
        let (kind, id) = match self {
            Source::Wake => (0, 0),
            Source::Listener => (1, 0),
            Source::Conn(id) => (2, id),
            Source::WorkerOut(serial) => (3, serial),
            Source::WorkerIn(serial) => (4, serial),
        };
        debug_assert!(id <= ID_MASK, "id {id} does not fit a token");
        (kind << KIND_SHIFT) | (id & ID_MASK)
    }

    fn from_token(token: u64) -> Option<Source> {
        let id = token & ID_MASK;
        Some(match token >> KIND_SHIFT {
            0 => Source::Wake,
            1 => Source::Listener,
            2 => Source::Conn(id),
            3 => Source::WorkerOut(id),
            4 => Source::WorkerIn(id),
            _ => return None,
        })
    }
}

/// Puts `fd` in the set, or changes what it waits for: from `was` (what it
/// was registered for, `None` if it is not registered) to `want` (`None`:
/// out of the set). Returns what it is registered for now.
fn update(
    epoll: &Epoll,
    fd: BorrowedFd<'_>,
    source: Source,
    was: Option<EpollFlags>,
    want: Option<EpollFlags>,
) -> Result<Option<EpollFlags>, ServeError> {
    let result = match (was, want) {
        (was, want) if was == want => return Ok(was),
        (None, Some(flags)) => epoll.add(fd, EpollEvent::new(flags, source.token())),
        (Some(_), Some(flags)) => epoll.modify(fd, &mut EpollEvent::new(flags, source.token())),
        (Some(_), None) => epoll.delete(fd),
        (None, None) => unreachable!("equal, handled above"),
    };
    result.map_err(|e| io_err("epoll_ctl")(e.into()))?;
    Ok(want)
}

impl Server {
    /// Registers the shutdown descriptor (once, when the loop starts).
    pub(super) fn watch_wake(&mut self, shutdown: &Shutdown) -> Result<(), ServeError> {
        update(
            &self.epoll,
            shutdown.wake_fd(),
            Source::Wake,
            None,
            Some(EpollFlags::EPOLLIN),
        )?;
        Ok(())
    }

    /// Brings the set in step with what each descriptor waits for this turn.
    fn sync_interest(&mut self) -> Result<(), ServeError> {
        let resting = self.accept_paused.is_some_and(|t| Instant::now() < t);
        match &self.listener {
            Some(l) => {
                let want = (!resting).then_some(EpollFlags::EPOLLIN);
                self.listener_watched = update(
                    &self.epoll,
                    l.as_fd(),
                    Source::Listener,
                    self.listener_watched,
                    want,
                )?;
            }
            // Closed (draining): it left the set with its descriptor.
            None => self.listener_watched = None,
        }
        let draining = self.draining.is_some();
        let max_frame = self.cfg.max_frame;
        let mut unwatchable = Vec::new();
        for (id, c) in &self.conns {
            let mut flags = EpollFlags::empty();
            if !draining && c.wants_input(max_frame) && self.read_room(*id, c) > 0 {
                flags |= EpollFlags::EPOLLIN;
            }
            if !c.outbuf.is_empty() {
                flags |= EpollFlags::EPOLLOUT;
            }
            // Registered even when it waits for nothing: a hang-up still shows.
            let source = Source::Conn(*id);
            match update(
                &self.epoll,
                c.stream.as_fd(),
                source,
                c.watched.get(),
                Some(flags),
            ) {
                Ok(now) => c.watched.set(now),
                Err(e) => unwatchable.push((*id, e)),
            }
        }
        // The kernel refused to watch it (out of memory, or of epoll watches
        // for this user): that caller is closed, the others are served.
        for (id, e) in unwatchable {
            tracing::warn!("connection {id}: {e}; closing it");
            self.conns.remove(&id);
        }
        for w in &mut self.workers {
            w.stdout_watched = update(
                &self.epoll,
                w.stdout.as_fd(),
                Source::WorkerOut(w.serial),
                w.stdout_watched,
                Some(EpollFlags::EPOLLIN),
            )?;
            // Its stdin only while requests wait for room in the pipe.
            let want = (!w.outbuf.is_empty()).then_some(EpollFlags::EPOLLOUT);
            w.stdin_watched = update(
                &self.epoll,
                w.stdin.as_fd(),
                Source::WorkerIn(w.serial),
                w.stdin_watched,
                want,
            )?;
        }
        Ok(())
    }

    /// One `epoll_wait`: how many sources are ready now (see [`Server::ready`]).
    pub(super) fn wait(&mut self) -> Result<usize, ServeError> {
        self.sync_interest()?;
        // Room for every descriptor, so one turn sees all that is ready.
        let room = 2 + self.conns.len() + 2 * self.workers.len();
        self.events.resize(room, EpollEvent::empty());
        let timeout = self.wait_timeout();
        match self.epoll.wait(&mut self.events, timeout) {
            Ok(n) => Ok(n),
            Err(Errno::EINTR) => Ok(0),
            Err(e) => Err(io_err("epoll_wait")(e.into())),
        }
    }

    /// The `k`th source the last wait found ready, and what it is ready for.
    pub(super) fn ready(&self, k: usize) -> (Option<Source>, EpollFlags) {
        let e = self.events[k];
        (Source::from_token(e.data()), e.events())
    }

    /// Where the child with this serial number is in `workers`, if it is
    /// still there (it may have been replaced earlier in the turn).
    pub(super) fn worker_position(&self, serial: u64) -> Option<usize> {
        self.workers.iter().position(|w| w.serial == serial)
    }
}

#[cfg(test)]
mod tests {
    use super::Source;

    #[test]
    fn a_token_names_its_source_again() {
        for s in [
            Source::Wake,
            Source::Listener,
            Source::Conn(0),
            Source::Conn(7),
            Source::Conn((1 << 56) - 1),
            Source::WorkerOut(3),
            Source::WorkerIn(3),
        ] {
            assert_eq!(Source::from_token(s.token()), Some(s));
        }
        assert_eq!(Source::from_token(9 << 56), None);
    }
}
