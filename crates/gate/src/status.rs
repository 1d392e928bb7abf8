//! A semaphore's status: who holds which slot, from the kernel's records.

use crate::error::GateError;
use crate::{COUNTER, FIRST_SLOT, SIZE};

/// One holder in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// The slot, 0-based.
    pub slot: u16,
    /// The process that holds it.
    pub pid: i32,
    /// Its command line, if it can be read.
    pub command: Option<String>,
}

/// A snapshot of a semaphore.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The semaphore's name.
    pub name: String,
    /// Its slot count.
    pub slots: u16,
    /// Free slots (the counter's value).
    pub free: u16,
    /// Who holds which slot.
    pub holders: Vec<Holder>,
    /// Processes blocked waiting for a slot.
    pub waiting: u32,
}

/// The holder records of a set, as the kernel reports them, turned into a
/// [`Status`]: `values` from `GETALL` (counter, size marker, one per slot),
/// `waiting` from `GETNCNT`, and `holder_pid(slot)` from `GETPID` of a held
/// slot. Values no gate could have left (a counter above the slot count,
/// a slot semaphore other than 0 or 1, more slots held than counter units
/// taken, a wrong marker or length: another program changed the set) are
/// [`GateError::Tampered`], never a panic or a nonsensical status.
pub fn status_from(
    name: &str,
    slots: u16,
    values: &[u16],
    waiting: i32,
    mut holder_pid: impl FnMut(u16) -> Result<i32, GateError>,
) -> Result<Status, GateError> {
    let bad = || GateError::Tampered(name.to_owned());
    if values.len() != usize::from(slots) + 2 || values[usize::from(SIZE)] != slots {
        return Err(bad());
    }
    let free = values[usize::from(COUNTER)];
    let slot_values = &values[usize::from(FIRST_SLOT)..];
    if free > slots || slot_values.iter().any(|&v| v > 1) {
        return Err(bad());
    }
    // Taking a slot is two steps (counter, then slot), so for a moment a
    // taker holds a counter unit but no slot yet; never the other way round.
    let held = slot_values.iter().filter(|&&v| v == 0).count();
    if held > usize::from(slots - free) {
        return Err(bad());
    }
    let waiting = u32::try_from(waiting).map_err(|_| bad())?;
    let mut holders = Vec::with_capacity(held);
    for (slot, _) in (0..slots).zip(slot_values).filter(|(_, &v)| v == 0) {
        let pid = holder_pid(slot)?;
        holders.push(Holder {
            slot,
            pid,
            command: command_line(pid),
        });
    }
    Ok(Status {
        name: name.to_owned(),
        slots,
        free,
        holders,
        waiting,
    })
}

/// The command line of process `pid`, from `/proc`, if readable.
pub(crate) fn command_line(pid: i32) -> Option<String> {
    parse_cmdline(&syncomm_sys::proc::cmdline(pid)?)
}

/// A command line as shown by `--status`, from the contents of
/// `/proc/PID/cmdline` (arguments separated by NUL bytes): the non-empty
/// arguments joined by spaces, invalid UTF-8 replaced; `None` when there
/// are none (a kernel thread, a zombie).
pub fn parse_cmdline(raw: &[u8]) -> Option<String> {
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_records_no_gate_leaves_are_refused() {
        let pid = |s: u16| Ok(1000 + i32::from(s));
        // 3 slots, slot 1 held, one taker between its two steps.
        let st = status_from("t", 3, &[1, 3, 1, 0, 1], 2, pid).unwrap();
        assert_eq!((st.free, st.waiting), (1, 2));
        assert_eq!(st.holders.len(), 1);
        assert_eq!((st.holders[0].slot, st.holders[0].pid), (1, 1001));
        for (values, waiting) in [
            (&[4u16, 3, 1, 1, 1][..], 0), // counter above the slot count
            (&[3, 3, 1, 2, 1], 0),        // a slot semaphore at 2
            (&[3, 3, 0, 1, 1], 0),        // a slot held with every unit free
            (&[1, 2, 1, 1, 1], 0),        // wrong size marker
            (&[1, 3, 1, 1], 0),           // wrong length
            (&[1, 3, 1, 1, 1], -1),       // negative waiter count
        ] {
            assert!(
                matches!(
                    status_from("t", 3, values, waiting, pid),
                    Err(GateError::Tampered(_))
                ),
                "{values:?}"
            );
        }
        assert_eq!(
            parse_cmdline(b"sh\0-c\0\0echo hi\0"),
            Some("sh -c echo hi".into())
        );
        assert_eq!(parse_cmdline(b"\0\0"), None);
    }
}
