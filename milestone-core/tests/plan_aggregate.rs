//! Aggregating the four planning analyses into one plan: deterministic, whatever order the
//! analyses finish in and whatever order an analyst listed its sets and risks.

use milestone_core::plan::{
    Analyses, Analysis, Estimates, EstimationAnalysis, Level, PhaseEstimate, Risk, RiskAnalysis,
    ScopeAnalysis, aggregate, validate_plan,
};
use milestone_core::{KiroItem, KiroStrategy, PhaseId, TaskId, TaskSpec, Workflow};
use proptest::prelude::*;

fn pid(s: &str) -> PhaseId {
    PhaseId::new(s).unwrap()
}

fn risk(d: &str, p: Level, i: Level) -> Risk {
    Risk {
        description: d.into(),
        probability: p,
        impact: i,
        mitigation: "m".into(),
        contingency: "c".into(),
    }
}

fn analyses() -> Vec<Analysis> {
    let wf = Workflow::kiro();
    vec![
        Analysis::Scope(ScopeAnalysis {
            components: vec!["ui".into(), "auth".into(), "ui".into()],
            dependencies: vec!["postgres".into()],
            file_count: 12,
            risk_factors: vec!["legacy".into(), "deadline".into()],
            ..ScopeAnalysis::default()
        }),
        Analysis::Estimation(EstimationAnalysis {
            estimates: Estimates {
                phases: wf
                    .phases()
                    .iter()
                    .map(|p| PhaseEstimate {
                        phase: p.id.clone(),
                        effort_ms: 60_000,
                    })
                    .collect(),
                buffer_percent: 10,
                critical_path: vec![pid("spec"), pid("execute")],
            },
            tasks: vec![
                TaskSpec::new(TaskId::new("b").unwrap(), "B"),
                TaskSpec::new(TaskId::new("a").unwrap(), "A"),
                TaskSpec::new(TaskId::new("b").unwrap(), "B"),
            ],
        }),
        Analysis::Risk(RiskAnalysis {
            risks: vec![
                risk("slow db", Level::Low, Level::Medium),
                risk("token leak", Level::Medium, Level::High),
                risk("slow db", Level::Low, Level::Medium),
                risk("api drift", Level::High, Level::High),
            ],
        }),
        Analysis::Kiro(KiroStrategy {
            keep: vec![
                KiroItem::new("sessions", pid("design")),
                KiroItem::new("sessions", pid("design")),
            ],
            originate: vec![KiroItem::new("2fa", pid("execute"))],
            ..KiroStrategy::default()
        }),
    ]
}

#[test]
fn aggregation_normalises_as_documented() {
    let mut all = Analyses::default();
    for a in analyses() {
        assert_eq!(all.record(a), None);
    }
    assert!(all.is_complete());
    let plan = aggregate(all);
    let scope = plan.scope.as_ref().unwrap();
    assert_eq!(scope.components, ["auth", "ui"]);
    assert_eq!(scope.risk_factors, ["deadline", "legacy"]);
    let risks: Vec<&str> = plan
        .risks
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| r.description.as_str())
        .collect();
    assert_eq!(
        risks,
        ["api drift", "token leak", "slow db"],
        "worst first, no duplicates"
    );
    let tasks: Vec<&str> = plan.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        tasks,
        ["b", "a"],
        "breakdown order kept, exact duplicate dropped"
    );
    assert_eq!(plan.kiro.as_ref().unwrap().keep.len(), 1);
    assert_eq!(
        plan.estimates.as_ref().unwrap().critical_path,
        [pid("spec"), pid("execute")]
    );
    assert_eq!(validate_plan(&plan, &Workflow::kiro()), Ok(()));
}

#[test]
fn conflicts_are_kept_for_validation_to_report() {
    let mut all = Analyses::default();
    for a in analyses() {
        all.record(a);
    }
    if let Some(e) = all.estimation.as_mut() {
        let mut other = TaskSpec::new(TaskId::new("a").unwrap(), "A, but different");
        other.estimate_ms = Some(5);
        e.tasks.push(other);
    }
    let plan = aggregate(all);
    assert_eq!(plan.tasks.len(), 3);
    let problems = validate_plan(&plan, &Workflow::kiro()).unwrap_err();
    assert_eq!(problems.0[0].location, "plan.tasks[2].id");
}

#[test]
fn missing_analyses_leave_sections_empty_and_a_rerun_replaces() {
    let mut all = Analyses::default();
    let [scope, estimation, ..] = <[Analysis; 4]>::try_from(analyses()).unwrap();
    all.record(scope.clone());
    assert!(!all.is_complete());
    let plan = aggregate(all.clone());
    assert!(plan.scope.is_some());
    assert!(plan.estimates.is_none() && plan.risks.is_none() && plan.kiro.is_none());
    assert!(plan.tasks.is_empty());
    let problems = validate_plan(&plan, &Workflow::kiro()).unwrap_err();
    let locations: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(locations, ["plan.estimates", "plan.risks", "plan.kiro"]);
    // Recording the same kind again supersedes and hands back the old result.
    all.record(estimation);
    assert_eq!(
        all.record(Analysis::Scope(ScopeAnalysis::default())),
        Some(scope)
    );
    assert_eq!(all.scope, Some(ScopeAnalysis::default()));
}

fn shuffled<T: Clone>(v: &[T], seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    let mut x = seed | 1;
    for i in (1..out.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.swap(i, (x % (i as u64 + 1)) as usize);
    }
    out
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![Just(Level::Low), Just(Level::Medium), Just(Level::High)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn aggregation_ignores_arrival_and_listing_order(
        seed in any::<u64>(),
        components in proptest::collection::vec("[a-c]{1,2}", 0..6),
        risks in proptest::collection::vec(("[a-c]{1,2}", level(), level(), "[xy]?"), 0..8),
    ) {
        let mut base = analyses();
        if let Analysis::Scope(s) = &mut base[0] {
            s.components = components.clone();
        }
        if let Analysis::Risk(r) = &mut base[2] {
            r.risks = risks
                .iter()
                .map(|(d, p, i, m)| Risk { mitigation: m.clone(), ..risk(d, *p, *i) })
                .collect();
        }
        let mut in_order = Analyses::default();
        for a in base.clone() {
            in_order.record(a);
        }
        let expected = aggregate(in_order);

        // The same analyses finishing in another order, with sets and risks listed
        // differently, give the same plan.
        let mut reordered = Analyses::default();
        for mut a in shuffled(&base, seed) {
            match &mut a {
                Analysis::Scope(s) => s.components = shuffled(&s.components, seed ^ 1),
                Analysis::Risk(r) => r.risks = shuffled(&r.risks, seed ^ 2),
                _ => {}
            }
            reordered.record(a);
        }
        let got = aggregate(reordered);
        prop_assert_eq!(&got, &expected);

        // Risks come out worst first, without duplicates.
        let out = got.risks.unwrap();
        prop_assert!(out.windows(2).all(|w| w[0].severity() >= w[1].severity() && w[0] != w[1]));
        for r in &risks {
            prop_assert!(out.iter().any(|o| o.description == r.0 && o.mitigation == r.3));
        }
        // Components are a sorted set of what was listed.
        let mut want = components;
        want.sort();
        want.dedup();
        prop_assert_eq!(got.scope.unwrap().components, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn exact_duplicates_go_and_first_occurrences_keep_their_order(
        items in proptest::collection::vec(("[ab]{1,2}", prop_oneof![Just("design"), Just("spec")]), 0..24),
        efforts in proptest::collection::vec(0u64..3, 0..12),
    ) {
        let kiro: Vec<KiroItem> = items.iter().map(|(d, p)| KiroItem::new(d.clone(), pid(p))).collect();
        let estimates: Vec<PhaseEstimate> = efforts
            .iter()
            .enumerate()
            .map(|(i, &e)| PhaseEstimate { phase: pid(if i % 2 == 0 { "design" } else { "spec" }), effort_ms: e })
            .collect();
        let plan = aggregate(Analyses {
            kiro: Some(KiroStrategy { improve: kiro.clone(), ..KiroStrategy::default() }),
            estimation: Some(EstimationAnalysis {
                estimates: Estimates { phases: estimates.clone(), ..Estimates::default() },
                tasks: Vec::new(),
            }),
            ..Analyses::default()
        });
        // The obvious quadratic rule, as the reference.
        fn naive<T: PartialEq + Clone>(v: &[T]) -> Vec<T> {
            let mut out: Vec<T> = Vec::new();
            for x in v {
                if !out.contains(x) {
                    out.push(x.clone());
                }
            }
            out
        }
        prop_assert_eq!(plan.kiro.unwrap().improve, naive(&kiro));
        prop_assert_eq!(plan.estimates.unwrap().phases, naive(&estimates));
    }
}
