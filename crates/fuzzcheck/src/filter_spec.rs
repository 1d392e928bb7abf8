//! Fuzz check: a `filter` stage spec, as `filter` parses its arguments.
//!
//! Invariants: parsing never panics; an accepted spec keeps its text; the
//! stage it means, written back in canonical form (`add 5`, `grep TEXT`),
//! parses to the same stage; a spec is accepted only if its first word is a
//! known stage.

use syncomm_pipeline::{Stage, StageSpec};

/// The canonical spec of `stage`, or `None` for `delay` (its duration is
/// written in many ways and is checked by the `duration` target).
fn canonical(stage: &Stage) -> Option<String> {
    Some(match stage {
        Stage::Add(n) => format!("add {n}"),
        Stage::Mul(n) => format!("mul {n}"),
        Stage::Neg => "neg".into(),
        Stage::Square => "square".into(),
        Stage::Upper => "upper".into(),
        Stage::Lower => "lower".into(),
        Stage::Trim => "trim".into(),
        Stage::Grep(t) => format!("grep {t}"),
        Stage::Pass => "pass".into(),
        Stage::Delay(_) => return None,
    })
}

/// Runs the parser on `data` and asserts its invariants.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // arguments reach filter as UTF-8 (clap refuses the rest)
    };
    let Ok(spec) = StageSpec::parse(text) else {
        return;
    };
    assert_eq!(spec.text, text, "an accepted spec keeps its text");
    let first = text
        .split_whitespace()
        .next()
        .expect("an accepted spec has a word");
    let known = [
        "add", "mul", "neg", "square", "upper", "lower", "trim", "grep", "pass", "delay",
    ];
    assert!(known.contains(&first), "accepted unknown stage {first:?}");
    if let Stage::Grep(t) = &spec.stage {
        assert!(
            !t.is_empty() && t.trim() == t,
            "grep text {t:?} is trimmed and not empty"
        );
    }
    if let Some(c) = canonical(&spec.stage) {
        let again = StageSpec::parse(&c).expect("the canonical spec parses");
        assert_eq!(
            again.stage, spec.stage,
            "canonical {c:?} means the same stage"
        );
    }
}
