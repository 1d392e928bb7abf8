//! The rendezvous protocol as a pure decision: given the registry and who
//! lives, what to write back and what to do next.

use std::path::PathBuf;

use syncomm_common::Name;
use syncomm_sys::proc::Stamp;

use crate::registry::{Entry, Registry};
use crate::{Error, MemberId, Options};

/// What a member is waiting for, in words (for timeout and interrupt messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A previous group under this name is still finishing.
    GroupFinishing { present: usize },
    /// Fewer than M members are present.
    Members { present: Vec<MemberId>, want: usize },
    /// The group is complete; some have not yet seen it.
    Barrier { unseen: Vec<MemberId> },
}

impl Waiting {
    pub(crate) fn describe(&self, name: &Name) -> String {
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
pub(crate) enum Next {
    /// The group met and we have left the registry.
    Done(Vec<MemberId>),
    /// Wait for a change; `others` are the members whose death would be one.
    Wait { others: Vec<Stamp>, why: Waiting },
}

/// Where a member is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not in the registry yet.
    Arriving,
    /// Registered, waiting for M members.
    Joined,
    /// Has seen the complete group (and marked itself `seen`).
    Seen(Vec<MemberId>),
}

/// Whether `reg` holds a finished group: complete, and every member still
/// registered has seen it. Then nobody needs the registry any more.
pub(crate) fn finished(reg: &Registry) -> bool {
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
pub(crate) fn decide(
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
