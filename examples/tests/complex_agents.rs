//! `complex_agents` runs in the test suite: a high-complexity plan is executed by agents with
//! tasks in parallel, and the comparison with the direct baseline is computed and printed.

use std::sync::{Arc, Mutex};

use milestone_core::complexity::{Complexity, ExecutionMode, Recommendation};
use milestone_core::{ItemStatus, MilestoneStatus};

#[test]
fn complex_agents_runs_a_high_complexity_milestone_on_parallel_agents() {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let out: milestone_examples::Out = buffer.clone();
    let s = milestone_examples::complex_agents::run(out).unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();

    // High complexity, so Auto chose agents; the run completed every task.
    assert_eq!(s.complexity, Complexity::High, "{text}");
    assert_eq!(s.agents.mode, ExecutionMode::Agents, "{text}");
    assert!(s.agents.is_completed(), "{text}");
    assert_eq!(s.state.status(), MilestoneStatus::Completed);
    assert_eq!(s.state.tasks().len(), 24);
    assert!(
        s.state
            .tasks()
            .iter()
            .all(|t| t.item.status == ItemStatus::Completed)
    );

    assert_eq!(s.state.git().commits.len(), 4);
    assert_eq!(
        s.state.git().tag.as_deref(),
        Some("milestone/auth-refactor")
    );

    // Agents did all the work of the agent run — three phases and 24 tasks, each once — and
    // independent tasks ran side by side.
    assert_eq!(s.agent_calls.len(), 27, "{:?}", s.agent_calls);
    assert!(s.agent_calls.iter().all(|c| c.contains("-agent: ")));
    assert_eq!(s.agents.metrics.agent_runs, 27);
    assert_eq!(s.agents.metrics.direct_runs, 0);
    assert!(s.agents.metrics.max_parallel > 1, "{text}");
    assert!(s.agents.metrics.max_parallel <= 8, "{text}");

    // The baseline ran the same work directly, one step at a time.
    assert_eq!(s.direct.mode, ExecutionMode::Direct);
    assert!(s.direct.is_completed(), "{text}");
    assert_eq!(s.direct_calls.len(), 27, "{:?}", s.direct_calls);
    assert!(s.direct_calls.iter().all(|c| c.contains("-direct: ")));
    assert_eq!(s.direct.metrics.max_parallel, 1);

    // The comparison: parallel agents beat the sequential baseline (nominally about 2.9x;
    // asserted with room for a loaded machine), and the recommendation follows the rule.
    let c = s.comparison;
    assert!(c.speedup > 1.5, "{text}");
    assert!(c.parallelism > 1.0, "{text}");
    assert!((c.quality - 1.0).abs() < 1e-9, "{text}");
    assert_eq!(
        c.recommendation,
        Recommendation::from_ratios(c.speedup, c.quality)
    );
    assert_ne!(c.recommendation, Recommendation::DirectForSimple, "{text}");

    // The output says what happened.
    assert!(text.contains("-> complexity high"), "{text}");
    assert!(text.contains("agent run:       mode agents"), "{text}");
    assert!(text.contains("direct baseline: mode direct"), "{text}");
    assert!(
        text.contains(&format!("speedup              {:.2}x", c.speedup)),
        "{text}"
    );
    assert!(text.contains("recommendation       "), "{text}");
}
