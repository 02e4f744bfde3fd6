//! Pictures: status shown as text and class, hostile titles cannot break Mermaid or DOT syntax,
//! and the same state always draws the same bytes.

use milestone_core::graph::WorkGraph;
use milestone_core::picture::{NodeView, graph_to_dot, graph_to_mermaid, to_dot, to_mermaid};
use milestone_core::{
    Event, ItemOutput, ItemRef, ItemStatus, MilestoneId, MilestoneState, PhaseId, Progress, TaskId,
    TaskSpec, Timestamp, Workflow,
};

const HOSTILE: &str = "Say \"hi\" [now] {x} (y) <script>alert(1)</script> #1 & `tick` \
back\\slash\nnew line\r\ttab |pipe;\u{2028}end\\";

fn task(id: &str, title: &str, deps: &[&str]) -> TaskSpec {
    let mut t = TaskSpec::new(TaskId::new(id).unwrap(), title);
    t.dependencies = deps.iter().map(|d| TaskId::new(*d).unwrap()).collect();
    t
}

/// A milestone with design completed, spec in progress at 40 %, and three tasks (one with a
/// hostile title).
fn state(title: &str) -> MilestoneState {
    let mut s = MilestoneState::from_events([&Event::Created {
        at: Timestamp(0),
        id: MilestoneId::new("login").unwrap(),
        title: title.into(),
        context: String::new(),
        workflow: Workflow::kiro(),
        seed: 1,
    }])
    .unwrap();
    let design = ItemRef::Phase(PhaseId::new("design").unwrap());
    let spec = ItemRef::Phase(PhaseId::new("spec").unwrap());
    let events = [
        Event::ExecutionStarted { at: Timestamp(1) },
        Event::TasksAdded {
            at: Timestamp(1),
            tasks: vec![
                task("a", HOSTILE, &[]),
                task("b", "Wire it", &["a"]),
                task("c", "", &[]),
            ],
        },
        Event::ItemStarted {
            at: Timestamp(2),
            item: design.clone(),
            attempt: 1,
        },
        Event::ItemCompleted {
            at: Timestamp(3),
            item: design,
            output: ItemOutput::default().into(),
        },
        Event::ItemStarted {
            at: Timestamp(4),
            item: spec.clone(),
            attempt: 1,
        },
        Event::ItemProgressed {
            at: Timestamp(5),
            item: spec,
            progress: Progress::from_basis_points(4_000),
        },
    ];
    for e in &events {
        s.apply(e).unwrap();
    }
    s
}

fn node_lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(prefix)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()) && !r.contains("->"))
        })
        .collect()
}

#[test]
fn mermaid_shows_status_as_text_and_class() {
    let m = to_mermaid(&state("Add login"));
    assert!(m.starts_with("flowchart TD\n"));
    for class in [
        "pending",
        "in_progress",
        "completed",
        "failed",
        "blocked",
        "skipped",
        "cancelled",
    ] {
        assert!(m.contains(&format!("classDef {class} fill:")), "{class}");
    }
    assert!(
        m.contains("    n0[\"Design<br/>design: completed\"]:::completed\n"),
        "{m}"
    );
    assert!(
        m.contains("    n1[\"Specification<br/>spec: in-progress 40.00 %\"]:::in_progress\n"),
        "{m}"
    );
    assert!(
        m.contains("    n5(\"Wire it<br/>b: pending\"):::pending\n"),
        "{m}"
    );
    // An empty title shows the id.
    assert!(
        m.contains("    n6(\"c<br/>c: pending\"):::pending\n"),
        "{m}"
    );
    for edge in [
        "n0 --> n1",
        "n1 --> n2",
        "n2 --> n3",
        "n2 --> n4",
        "n4 --> n5",
        "n5 --> n3",
        "n6 --> n3",
    ] {
        assert!(
            m.contains(&format!("    {edge}\n")),
            "{edge} missing in {m}"
        );
    }
}

#[test]
fn mermaid_labels_survive_hostile_titles() {
    let m = to_mermaid(&state("Add login"));
    let g = WorkGraph::from_state(&state("x"));
    // One line per node: a line break in a title did not split a statement.
    assert_eq!(m.lines().count(), 1 + 7 + g.len() + g.edge_count());
    let nodes = node_lines(&m, "    n");
    assert_eq!(nodes.len(), g.len());
    for l in &nodes {
        assert_eq!(l.matches('"').count(), 2, "a quote escaped the label: {l}");
        let label = l.split('"').nth(1).unwrap();
        let bare = label.replace("<br/>", "");
        assert!(!bare.contains('<') && !bare.contains('>'), "markup in {l}");
        assert!(!bare.contains('`'), "backtick in {l}");
        // Every '#' starts an entity code.
        for (i, _) in bare.match_indices('#') {
            let rest = &bare[i + 1..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            assert!(
                digits > 0 && rest[digits..].starts_with(';'),
                "bare # in {l}"
            );
        }
        let class = l.rsplit(":::").next().unwrap();
        assert!(
            ["pending", "in_progress", "completed"].contains(&class),
            "{l}"
        );
    }
    let a = nodes.iter().find(|l| l.starts_with("    n4(")).unwrap();
    assert!(
        a.contains("Say #34;hi#34; [now] {x} (y) #60;script#62;"),
        "{a}"
    );
    assert!(a.contains("#35;1 #38; #96;tick#96;"), "{a}");
    assert!(a.contains("slash new line  tab |pipe"), "{a}");
    assert!(
        a.contains("|pipe; end"),
        "a line separator became a space: {a}"
    );
}

/// Splits a DOT attribute list into its double-quoted strings, honouring backslash escapes;
/// fails if a string is unterminated.
fn dot_strings(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\\') => {
                        s.push('\\');
                        s.push(chars.next().expect("escape at end of line"));
                    }
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => panic!("unterminated string in {line}"),
                }
            }
            out.push(s);
        }
    }
    out
}

#[test]
fn dot_shows_status_and_survives_hostile_titles() {
    let d = to_dot(&state(HOSTILE));
    let g = WorkGraph::from_state(&state("x"));
    assert!(d.starts_with("digraph \"login\" {\n"));
    assert!(d.ends_with("}\n"));
    assert_eq!(d.lines().count(), 5 + g.len() + g.edge_count() + 1);
    // The milestone title is one well-formed string.
    let title_line = d.lines().nth(1).unwrap();
    assert!(title_line.starts_with("    label=\"") && title_line.ends_with("\";"));
    assert_eq!(dot_strings(title_line).len(), 1);
    let nodes = node_lines(&d, "    n");
    assert_eq!(nodes.len(), g.len());
    for l in &nodes {
        assert!(l.ends_with("\"];"), "{l}");
        let strings = dot_strings(l);
        assert_eq!(
            strings.len(),
            5,
            "label, style, fillcolor, color, class in {l}"
        );
        // Outside the strings only attribute syntax remains.
        let mut outside = String::new();
        let mut in_str = false;
        let mut esc = false;
        for c in l.chars() {
            match (in_str, esc, c) {
                (true, false, '\\') => esc = true,
                (true, true, _) => esc = false,
                (_, false, '"') => in_str = !in_str,
                (false, _, c) => outside.push(c),
                _ => {}
            }
        }
        let outside =
            outside.trim_start_matches(|c: char| c == ' ' || c == 'n' || c.is_ascii_digit());
        assert_eq!(
            outside, "[label=, style=, fillcolor=, color=, class=];",
            "{l}"
        );
    }
    assert!(
        d.contains(
            "n0 [label=\"Design\\ndesign: completed\", style=\"filled\", fillcolor=\"#c8e6c9\""
        ),
        "{d}"
    );
    assert!(
        d.contains("spec: in-progress 40.00 %\", style=\"filled\", fillcolor=\"#bbdefb\""),
        "{d}"
    );
    assert!(d.contains("class=\"in_progress\""));
    let a = nodes.iter().find(|l| l.starts_with("    n4 ")).unwrap();
    assert!(
        a.contains(r#"Say \"hi\" [now] {x} (y) <script>alert(1)</script>"#),
        "{a}"
    );
    assert!(a.contains(r"back\\slash new line  tab"), "{a}");
    assert!(a.contains("style=\"rounded,filled\""), "{a}");
    for edge in ["n0 -> n1;", "n4 -> n5;", "n6 -> n3;"] {
        assert!(d.contains(&format!("    {edge}\n")), "{edge}");
    }
}

#[test]
fn the_same_state_draws_the_same_bytes() {
    let (s1, s2) = (state("Add login"), state("Add login"));
    assert_eq!(to_mermaid(&s1), to_mermaid(&s2));
    assert_eq!(to_dot(&s1), to_dot(&s2));
    assert_eq!(to_mermaid(&s1), to_mermaid(&s1));
    let roundtrip = MilestoneState::from_json(&serde_json::to_string(&s1).unwrap()).unwrap();
    assert_eq!(to_dot(&roundtrip), to_dot(&s1));
}

fn check(status: ItemStatus, expected: (&str, &str)) {
    let g = WorkGraph::new(&Workflow::kiro(), &[]).unwrap();
    let view = |_: &ItemRef| NodeView {
        title: "T",
        status,
        progress: Progress::from_basis_points(2_500),
    };
    let m = graph_to_mermaid(&g, view);
    let d = graph_to_dot(&g, "m", "M", view);
    let (class, text) = expected;
    assert!(
        m.contains(&format!("n0[\"T<br/>design: {text}\"]:::{class}\n")),
        "{status:?}: {m}"
    );
    assert!(
        d.contains(&format!("label=\"T\\ndesign: {text}\"")),
        "{status:?}: {d}"
    );
    assert!(d.contains(&format!("class=\"{class}\"")), "{status:?}: {d}");
}

#[test]
fn every_status_has_its_class_and_text() {
    check(ItemStatus::Pending, ("pending", "pending"));
    check(
        ItemStatus::InProgress,
        ("in_progress", "in-progress 25.00 %"),
    );
    check(ItemStatus::Completed, ("completed", "completed"));
    check(ItemStatus::Failed, ("failed", "failed"));
    check(ItemStatus::Blocked, ("blocked", "blocked"));
    check(ItemStatus::Skipped, ("skipped", "skipped"));
    check(ItemStatus::Cancelled, ("cancelled", "cancelled"));
}

#[test]
fn long_titles_are_cut() {
    let g = WorkGraph::new(&Workflow::kiro(), &[]).unwrap();
    let long = "é".repeat(500);
    let m = graph_to_mermaid(&g, |_| NodeView {
        title: &long,
        ..NodeView::PENDING
    });
    let label = m.lines().find(|l| l.starts_with("    n0[")).unwrap();
    assert!(
        label.contains(&format!("{}…<br/>", "é".repeat(100))),
        "{label}"
    );
    assert!(!label.contains(&"é".repeat(101)));
}

mod random_titles {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever the titles, every node stays one statement with one well-formed label.
        #[test]
        fn any_title_keeps_both_syntaxes_intact(
            titles in prop::collection::vec(any::<String>(), 4),
            milestone_title in any::<String>(),
        ) {
            let g = WorkGraph::new(&Workflow::kiro(), &[]).unwrap();
            let view = |k: &ItemRef| NodeView {
                title: &titles[g.node(k).unwrap().index()],
                ..NodeView::PENDING
            };
            let m = graph_to_mermaid(&g, view);
            prop_assert_eq!(m.lines().count(), 1 + 7 + g.len() + g.edge_count());
            for l in node_lines(&m, "    n") {
                prop_assert_eq!(l.matches('"').count(), 2, "{}", l);
                let label = l.split('"').nth(1).unwrap().replace("<br/>", "");
                prop_assert!(!label.contains(['<', '>', '`']), "{}", l);
                prop_assert!(l.ends_with("\"]:::pending"), "{}", l);
            }
            prop_assert!(!m.contains(['\u{2028}', '\u{2029}', '\r']), "line break left in {}", m);
            let d = graph_to_dot(&g, "m", &milestone_title, view);
            prop_assert!(!d.contains(['\u{2028}', '\u{2029}', '\r']), "line break left in {}", d);
            prop_assert_eq!(d.lines().count(), 5 + g.len() + g.edge_count() + 1);
            prop_assert_eq!(dot_strings(d.lines().nth(1).unwrap()).len(), 1);
            for l in node_lines(&d, "    n") {
                prop_assert_eq!(dot_strings(l).len(), 5, "{}", l);
                prop_assert!(l.ends_with("class=\"pending\"];"), "{}", l);
            }
        }
    }
}
