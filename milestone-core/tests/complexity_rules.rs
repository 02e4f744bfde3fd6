//! Complexity thresholds, the execution-mode decision and the direct-vs-agent comparison, at
//! their boundaries.

use milestone_core::complexity::{
    Comparison, Complexity, ComplexityInput, ExecutionMode, MAX_RATIO, Recommendation, RunMetrics,
    assess, compare, decide,
};
use milestone_core::plan::{MilestonePlan, ScopeAnalysis};
use milestone_core::{TaskId, TaskSpec, Workflow};
use proptest::prelude::*;

use Complexity::{High, Low, Medium};

fn input(tasks: u32, files: u32, phases: u32, git_operations: u32) -> ComplexityInput {
    ComplexityInput {
        tasks,
        files,
        phases,
        git_operations,
    }
}

fn check(case: (u32, u32, u32, u32), expected: Complexity) {
    let (t, f, p, g) = case;
    assert_eq!(
        assess(&input(t, f, p, g)),
        expected,
        "tasks {t}, files {f}, phases {p}, git operations {g}"
    );
}

#[test]
fn complexity_thresholds_at_their_boundaries() {
    check((0, 0, 0, 0), Low);
    check((10, 0, 4, 7), Low);
    check((11, 0, 4, 7), Medium);
    check((20, 0, 4, 7), Medium);
    check((21, 0, 4, 7), High);
    check((0, 20, 4, 7), Low);
    check((0, 21, 4, 7), Medium);
    check((0, 50, 4, 7), Medium);
    check((0, 51, 4, 7), High);
    check((10, 20, 4, 7), Low);
    check((11, 21, 4, 7), Medium);
    check((20, 50, 4, 7), Medium);
    check((21, 50, 4, 7), High);
    check((20, 51, 4, 7), High);
    check((u32::MAX, u32::MAX, u32::MAX, u32::MAX), High);
    // Phases and git operations raise low to medium, never to high.
    check((0, 0, 6, 0), Low);
    check((0, 0, 7, 0), Medium);
    check((0, 0, 0, 25), Low);
    check((0, 0, 0, 26), Medium);
    check((0, 0, 1000, 1000), Medium);
    check((21, 0, 1000, 1000), High);
}

#[test]
fn complexity_input_of_a_plan() {
    let wf = Workflow::kiro();
    let mut plan = MilestonePlan::default();
    assert_eq!(
        ComplexityInput::for_plan(&plan, &wf),
        input(0, 0, 4, 7),
        "no scope means no files; 4 phases need 4 commits, a branch, a tag and a merge"
    );
    plan.scope = Some(ScopeAnalysis {
        file_count: 51,
        ..ScopeAnalysis::default()
    });
    plan.tasks = (0..12)
        .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "t"))
        .collect();
    let got = ComplexityInput::for_plan(&plan, &wf);
    assert_eq!(got, input(12, 51, 4, 7));
    assert_eq!(assess(&got), High);
}

#[test]
fn mode_decision_table() {
    let cases = [
        ((Low, false), ExecutionMode::Direct),
        ((Low, true), ExecutionMode::Direct),
        ((Medium, false), ExecutionMode::Direct),
        ((Medium, true), ExecutionMode::Hybrid),
        ((High, false), ExecutionMode::Direct),
        ((High, true), ExecutionMode::Agents),
    ];
    for ((c, available), expected) in cases {
        assert_eq!(decide(c, available), expected, "{c:?}, agents {available}");
    }
}

fn run(duration_ms: u64, parallel_tasks: u32, resource_use: f64, quality: f64) -> RunMetrics {
    RunMetrics {
        duration_ms,
        parallel_tasks,
        resource_use,
        quality,
    }
}

/// One comparison case: direct run, agent run → (speedup, parallelism, efficiency, quality,
/// recommendation).
fn check_compare(
    direct: RunMetrics,
    agents: RunMetrics,
    expected: (f64, f64, f64, f64, Recommendation),
) {
    let got = compare(&direct, &agents);
    let want = Comparison {
        speedup: expected.0,
        parallelism: expected.1,
        resource_efficiency: expected.2,
        quality: expected.3,
        recommendation: expected.4,
    };
    assert_eq!(got, want, "direct {direct:?} vs agents {agents:?}");
}

#[test]
fn comparison_recommendations_at_their_boundaries() {
    use Recommendation::*;
    // Speedup exactly 2.0 is not above 2: agents for complex milestones only.
    check_compare(
        run(4000, 1, 10.0, 1.0),
        run(2000, 4, 5.0, 1.0),
        (2.0, 4.0, 2.0, 1.0, AgentsForComplex),
    );
    // Just above 2 with equal quality: always agents.
    check_compare(
        run(4001, 1, 10.0, 1.0),
        run(2000, 4, 5.0, 1.0),
        (2.0005, 4.0, 2.0, 1.0, AlwaysAgents),
    );
    // Above 2 but lower quality: agents for complex milestones.
    check_compare(
        run(5000, 1, 1.0, 1.0),
        run(1000, 8, 1.0, 0.5),
        (5.0, 8.0, 1.0, 0.5, AgentsForComplex),
    );
    // Quality exactly 1 is enough.
    check_compare(
        run(5000, 2, 1.0, 0.8),
        run(1000, 8, 2.0, 0.8),
        (5.0, 4.0, 0.5, 1.0, AlwaysAgents),
    );
    // Speedup exactly 1.5 is not above 1.5: direct for simple milestones.
    check_compare(
        run(3000, 1, 1.0, 1.0),
        run(2000, 1, 1.0, 2.0),
        (1.5, 1.0, 1.0, 2.0, DirectForSimple),
    );
    check_compare(
        run(3001, 1, 1.0, 1.0),
        run(2000, 1, 1.0, 1.0),
        (1.5005, 1.0, 1.0, 1.0, AgentsForComplex),
    );
    // Agents slower.
    check_compare(
        run(1000, 1, 1.0, 1.0),
        run(4000, 3, 4.0, 1.0),
        (0.25, 3.0, 0.25, 1.0, DirectForSimple),
    );
}

#[test]
fn comparison_survives_zeros_and_nan() {
    use Recommendation::*;
    // 0 / 0 is "no difference"; parallel 0 is read as 1.
    check_compare(
        run(0, 0, 0.0, 0.0),
        run(0, 0, 0.0, 0.0),
        (1.0, 1.0, 1.0, 1.0, DirectForSimple),
    );
    // An instant agent run: the largest finite ratio.
    check_compare(
        run(1000, 1, 1.0, 1.0),
        run(0, 1, 1.0, 1.0),
        (MAX_RATIO, 1.0, 1.0, 1.0, AlwaysAgents),
    );
    // NaN and negative measures are read as 0.
    check_compare(
        run(1000, 1, f64::NAN, f64::NAN),
        run(1000, 1, -3.0, 1.0),
        (1.0, 1.0, 1.0, MAX_RATIO, DirectForSimple),
    );
    check_compare(
        run(1000, 1, f64::INFINITY, 1.0),
        run(1000, 1, 1.0, f64::NAN),
        (1.0, 1.0, MAX_RATIO, 0.0, DirectForSimple),
    );
    assert_eq!(
        Recommendation::from_ratios(f64::NAN, f64::NAN),
        DirectForSimple
    );
}

fn measure() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        -1e12f64..1e12,
        0.0f64..1e300,
    ]
}

fn metrics() -> impl Strategy<Value = RunMetrics> {
    (any::<u64>(), any::<u32>(), measure(), measure()).prop_map(|(d, p, r, q)| run(d, p, r, q))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn comparison_is_total_and_finite(direct in metrics(), agents in metrics()) {
        let c = compare(&direct, &agents);
        for (name, v) in [("speedup", c.speedup), ("parallelism", c.parallelism),
            ("efficiency", c.resource_efficiency), ("quality", c.quality)] {
            prop_assert!(v.is_finite() && (0.0..=MAX_RATIO).contains(&v), "{name} = {v}");
        }
        prop_assert_eq!(c.recommendation, Recommendation::from_ratios(c.speedup, c.quality));
        // Every comparison round-trips through JSON exactly.
        let back: Comparison = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn assessment_is_monotone(t in 0u32..100, f in 0u32..200, p in 0u32..20, g in 0u32..60,
                              dt in 0u32..50, df in 0u32..50) {
        let a = assess(&input(t, f, p, g));
        let b = assess(&input(t + dt, f + df, p, g));
        prop_assert!(b >= a, "{a:?} -> {b:?}");
    }

    #[test]
    fn complexity_values_round_trip_through_json(t in any::<u32>(), f in any::<u32>(),
                                                 p in any::<u32>(), g in any::<u32>(),
                                                 d in 0u64..1u64 << 53, q in 0.0f64..10.0) {
        let i = input(t, f, p, g);
        let back: ComplexityInput = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        prop_assert_eq!(back, i);
        let c = assess(&i);
        let back: Complexity = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        prop_assert_eq!(back, c);
        for available in [false, true] {
            let m = decide(c, available);
            let back: ExecutionMode = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            prop_assert_eq!(back, m);
        }
        let r = run(d, p, q, q / 2.0);
        let back: RunMetrics = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }
}

#[test]
fn complexity_json_refuses_unknown_fields_and_values() {
    assert!(
        serde_json::from_str::<ComplexityInput>(
            r#"{"tasks":1,"files":2,"phases":3,"git_operations":4,"extra":1}"#
        )
        .is_err()
    );
    assert!(
        serde_json::from_str::<ComplexityInput>(
            r#"{"tasks":-1,"files":2,"phases":3,"git_operations":4}"#
        )
        .is_err()
    );
    assert!(serde_json::from_str::<Complexity>(r#""extreme""#).is_err());
    assert_eq!(
        serde_json::to_string(&Recommendation::AgentsForComplex).unwrap(),
        r#""agents-for-complex""#
    );
    assert_eq!(
        serde_json::to_string(&ExecutionMode::Hybrid).unwrap(),
        r#""hybrid""#
    );
}
