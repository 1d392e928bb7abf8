//! The registry's text format: its contents as types, rendered and parsed
//! strictly, so that a registry that parses renders back to the same text.
//!
//! ## Format
//! ```text
//! syncomm-discover registry v1
//! members 3
//! group -                          (or, once M members were present: group a b c)
//! member a 4242 1234567 waiting    (id, pid, start time, waiting|seen)
//! member b 4250 1234570 waiting
//! end
//! ```

use syncomm_sys::proc::Stamp;

use crate::id::MemberId;

/// The first line of every registry.
pub const MAGIC: &str = "syncomm-discover registry v1";

/// The largest registry read; anything longer is garbage.
pub const MAX_REGISTRY_BYTES: u64 = 1 << 20;

/// The most members a group may have.
pub const MAX_MEMBERS: usize = 1024;

/// One registered member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: MemberId,
    /// Its process (pid and start time).
    pub stamp: Stamp,
    /// Whether it has seen all M members (the barrier flag).
    pub seen: bool,
}

/// The registry's contents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Registry {
    /// M, the group size.
    pub members: usize,
    /// The group, fixed the moment M members were present; `None` while open.
    pub group: Option<Vec<MemberId>>,
    /// The registered members.
    pub entries: Vec<Entry>,
}

/// Why a registry's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

impl Registry {
    /// An empty, open registry for groups of `members`.
    pub fn new(members: usize) -> Registry {
        Registry {
            members,
            group: None,
            entries: Vec::new(),
        }
    }

    /// The entry of `id`, if registered.
    pub fn entry(&self, id: &MemberId) -> Option<&Entry> {
        self.entries.iter().find(|e| &e.id == id)
    }

    /// Whether the group is complete (M members were present).
    pub fn is_closed(&self) -> bool {
        self.group.is_some()
    }

    /// The text form (see the module doc).
    pub fn render(&self) -> String {
        let mut s = format!("{MAGIC}\nmembers {}\ngroup", self.members);
        match &self.group {
            None => s.push_str(" -"),
            Some(ids) => ids.iter().for_each(|id| {
                s.push(' ');
                s.push_str(id.as_str());
            }),
        }
        s.push('\n');
        for e in &self.entries {
            let state = if e.seen { "seen" } else { "waiting" };
            s.push_str(&format!(
                "member {} {} {} {state}\n",
                e.id, e.stamp.pid, e.stamp.start
            ));
        }
        s.push_str("end\n");
        s
    }

    /// Parses a registry file's bytes, as [`read`](super::read) does: at most
    /// [`MAX_REGISTRY_BYTES`], UTF-8, then [`Registry::parse`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Registry, ParseError> {
        if bytes.len() as u64 > MAX_REGISTRY_BYTES {
            return Err(ParseError {
                line: 1,
                why: format!("the file is larger than {MAX_REGISTRY_BYTES} bytes"),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ParseError {
            line: 1,
            why: "the file is not text".into(),
        })?;
        Registry::parse(text)
    }

    /// Parses the text form strictly: anything unexpected is an error, and
    /// numbers are written as [`Registry::render`] writes them (decimal
    /// digits, no sign, no leading zero), so a registry that parses renders
    /// back to the very same text.
    pub fn parse(text: &str) -> Result<Registry, ParseError> {
        let mut lines = text.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        let mut next = |want: &str| {
            lines.next().ok_or_else(|| ParseError {
                line: text.split('\n').count(),
                why: format!("the file ends where {want} was expected"),
            })
        };
        let bad = |line, why: String| Err(ParseError { line, why });

        let (n, l) = next("the header")?;
        if l != MAGIC {
            return bad(n, format!("expected the header {MAGIC:?}"));
        }
        let (n, l) = next("\"members M\"")?;
        let members = match l.strip_prefix("members ").and_then(number::<usize>) {
            Some(m) if (1..=MAX_MEMBERS).contains(&m) => m,
            _ => {
                return bad(
                    n,
                    format!("expected \"members M\" with M in 1..={MAX_MEMBERS}"),
                )
            }
        };
        let (n, l) = next("\"group ...\"")?;
        let group = match l.strip_prefix("group ") {
            Some("-") => None,
            Some(ids) => {
                let mut v = Vec::new();
                for w in ids.split(' ') {
                    match MemberId::new(w) {
                        Ok(id) if !v.contains(&id) => v.push(id),
                        Ok(_) => return bad(n, format!("id {w} twice in the group")),
                        Err(e) => return bad(n, e.to_string()),
                    }
                }
                if v.len() != members {
                    return bad(n, format!("the group has {} ids, not {members}", v.len()));
                }
                Some(v)
            }
            None => return bad(n, "expected \"group -\" or \"group ID...\"".into()),
        };
        let mut reg = Registry {
            members,
            group,
            entries: Vec::new(),
        };
        loop {
            let (n, l) = next("\"end\"")?;
            if l == "end" {
                break;
            }
            let w: Vec<&str> = l.split(' ').collect();
            let entry = match w.as_slice() {
                ["member", id, pid, start, state] => {
                    let id = MemberId::new(id).map_err(|e| ParseError {
                        line: n,
                        why: e.to_string(),
                    })?;
                    let pid = match number::<i32>(pid) {
                        Some(p) if p > 0 => p,
                        _ => return bad(n, format!("bad pid {pid:?}")),
                    };
                    let Some(start) = number::<u64>(start) else {
                        return bad(n, format!("bad start time {start:?}"));
                    };
                    let seen = match *state {
                        "seen" => true,
                        "waiting" => false,
                        other => return bad(n, format!("bad state {other:?}")),
                    };
                    Entry {
                        id,
                        stamp: Stamp { pid, start },
                        seen,
                    }
                }
                _ => return bad(n, "expected \"member ID PID START waiting|seen\"".into()),
            };
            if reg.entry(&entry.id).is_some() {
                return bad(n, format!("id {} registered twice", entry.id));
            }
            if let Some(group) = &reg.group {
                if !group.contains(&entry.id) {
                    return bad(n, format!("member {} is not in the group", entry.id));
                }
            } else if entry.seen {
                return bad(
                    n,
                    format!("member {} has seen a group that is not complete", entry.id),
                );
            }
            reg.entries.push(entry);
            if reg.entries.len() > members {
                return bad(n, format!("more than {members} members"));
            }
        }
        match lines.next() {
            Some((_, "")) if lines.next().is_none() => Ok(reg),
            Some((n, _)) => bad(n, "text after \"end\"".into()),
            None => bad(text.split('\n').count(), "no newline after \"end\"".into()),
        }
    }
}

/// A number in canonical decimal (digits only, no leading zero but "0" itself).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MemberId {
        MemberId::new(s).unwrap()
    }

    fn sample() -> Registry {
        Registry {
            members: 2,
            group: Some(vec![id("a"), id("b")]),
            entries: vec![
                Entry {
                    id: id("a"),
                    stamp: Stamp { pid: 10, start: 99 },
                    seen: true,
                },
                Entry {
                    id: id("b"),
                    stamp: Stamp {
                        pid: 11,
                        start: 100,
                    },
                    seen: false,
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        for reg in [sample(), Registry::new(5)] {
            assert_eq!(Registry::parse(&reg.render()).unwrap(), reg);
        }
    }

    #[test]
    fn refuses_every_truncation_and_garbage() {
        let text = sample().render();
        for cut in 0..text.len() {
            assert!(Registry::parse(&text[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            "hello\n",
            &text.replace("members 2", "members 0"),
            &text.replace("member b 11", "member a 11"),
            &text.replace("waiting", "sleeping"),
            &text.replace(" 11 ", " -11 "),
            &text.replace(" 11 ", " +11 "),
            &text.replace(" 11 ", " 011 "),
            &text.replace("members 2", "members 02"),
            &text.replace("group a b", "group a c"),
            &format!("{text}extra\n"),
        ] {
            assert!(Registry::parse(bad).is_err(), "{bad}");
        }
    }
}
