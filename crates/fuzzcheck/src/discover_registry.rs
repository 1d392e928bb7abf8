//! Fuzz check: the discover registry file (`discover.NAME.reg`), parsed by
//! [`Registry::from_bytes`] — the function `discover` itself reads it with.
//!
//! Invariants: never a panic; a registry that parses renders back to the very
//! same bytes (the format is canonical) and re-parses to the same registry;
//! sizes are bounded by the format and by the input (at most M entries, at
//! most [`MAX_MEMBERS`]; a fixed group has exactly M distinct ids; every
//! entry is a line of its own); a seen member belongs to a fixed group, and
//! every entry of a fixed group is one of its ids.

use syncomm_discover::registry::{Registry, MAX_MEMBERS, MAX_REGISTRY_BYTES};

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let Ok(reg) = Registry::from_bytes(data) else {
        return;
    };
    assert!(data.len() as u64 <= MAX_REGISTRY_BYTES);
    assert!((1..=MAX_MEMBERS).contains(&reg.members));
    assert!(reg.entries.len() <= reg.members);
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    assert!(reg.entries.len() + 4 <= lines, "an entry per line");
    match &reg.group {
        Some(group) => {
            assert_eq!(group.len(), reg.members);
            for (i, id) in group.iter().enumerate() {
                assert!(!group[..i].contains(id), "id {id} twice in the group");
            }
            assert!(reg.entries.iter().all(|e| group.contains(&e.id)));
        }
        None => assert!(reg.entries.iter().all(|e| !e.seen)),
    }
    for (i, e) in reg.entries.iter().enumerate() {
        assert!(e.stamp.pid > 0);
        assert!(reg.entries[..i].iter().all(|o| o.id != e.id));
    }
    let text = reg.render();
    assert_eq!(text.as_bytes(), data, "render(parse(x)) != x");
    assert_eq!(Registry::parse(&text).as_ref(), Ok(&reg));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds (registries copied from real runs) parse, and
    /// pass the check, as do the regression inputs.
    #[test]
    fn seeds_are_real_registries_and_pass() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut real = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(rd) = std::fs::read_dir(root.join(dir).join("discover_registry")) else {
                continue;
            };
            for f in rd.map(|e| e.unwrap().path()) {
                let data = std::fs::read(&f).unwrap();
                check(&data);
                if f.extension().is_some_and(|e| e == "reg") {
                    Registry::from_bytes(&data).unwrap_or_else(|e| panic!("{f:?}: {e}"));
                    real += 1;
                }
            }
        }
        assert!(real >= 3, "expected the real registries among the seeds");
    }
}
