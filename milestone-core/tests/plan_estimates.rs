//! Estimate arithmetic (total effort, timeline with buffer) and risk severity: exact integers,
//! saturating rather than overflowing.

use milestone_core::PhaseId;
use milestone_core::plan::{Estimates, Level, PhaseEstimate, Risk};

fn estimates(efforts: &[u64], buffer_percent: u32) -> Estimates {
    Estimates {
        phases: efforts
            .iter()
            .enumerate()
            .map(|(i, &effort_ms)| PhaseEstimate {
                phase: PhaseId::new(format!("p{i}")).unwrap(),
                effort_ms,
            })
            .collect(),
        buffer_percent,
        critical_path: Vec::new(),
    }
}

fn check(case: (&[u64], u32), expected: (u64, u64)) {
    let e = estimates(case.0, case.1);
    assert_eq!((e.total_effort_ms(), e.timeline_ms()), expected, "{case:?}");
}

#[test]
fn timeline_table() {
    check((&[], 0), (0, 0));
    check((&[], 50), (0, 0));
    check((&[1_000], 0), (1_000, 1_000));
    check((&[1_000, 3_000], 25), (4_000, 5_000));
    check((&[100, 200, 300, 400], 20), (1_000, 1_200));
    check((&[3], 50), (3, 4)); // 4.5 rounds down
    check((&[1_000], 300), (1_000, 4_000));
    check((&[u64::MAX, 1], 0), (u64::MAX, u64::MAX));
    check((&[u64::MAX / 2], 100), (u64::MAX / 2, u64::MAX - 1));
    check((&[u64::MAX], u32::MAX), (u64::MAX, u64::MAX));
}

#[test]
fn estimate_lookup() {
    let e = estimates(&[5, 7], 0);
    assert_eq!(e.for_phase("p1").map(|p| p.effort_ms), Some(7));
    assert_eq!(e.for_phase("p2"), None);
}

#[test]
fn severity_table() {
    use Level::*;
    let cases = [
        ((Low, Low), 1),
        ((Low, Medium), 2),
        ((Medium, Low), 2),
        ((Low, High), 3),
        ((Medium, Medium), 4),
        ((Medium, High), 6),
        ((High, High), 9),
    ];
    for ((probability, impact), expected) in cases {
        let r = Risk {
            description: "d".into(),
            probability,
            impact,
            mitigation: String::new(),
            contingency: String::new(),
        };
        assert_eq!(r.severity(), expected, "{probability:?} x {impact:?}");
    }
    assert!(Low < Medium && Medium < High);
    assert_eq!(serde_json::to_string(&High).unwrap(), "\"high\"");
}
