//! Pictures of the work graph: Mermaid and Graphviz DOT, with each node's status shown.
//!
//! A person reviewing a milestone wants to see what waits for what and where it stands. These
//! functions draw the [`WorkGraph`] (phases as boxes, tasks as rounded nodes, edges from a
//! dependency to its dependent) with the status both as text in the label and as a style
//! class per status, so the picture reads in colour and in plain text alike.
//!
//! Titles come from people and plans, so they are escaped for each syntax: quotes, brackets,
//! `<>`, `#`, backslashes and line breaks cannot end a label or inject markup. Output is
//! deterministic: the same state always gives the same bytes (nodes in graph order, edges in
//! the order they were added).
//!
//! ```
//! use milestone_core::picture::{to_dot, to_mermaid};
//! use milestone_core::{MilestoneId, MilestoneState, Timestamp, Workflow};
//!
//! let state = MilestoneState::new(MilestoneId::new("login")?, "Add login", "", Workflow::kiro(),
//!     Timestamp(0), 1);
//! let mermaid = to_mermaid(&state);
//! assert!(mermaid.starts_with("flowchart TD\n"));
//! assert!(mermaid.contains("n0 --> n1"));
//! assert!(to_dot(&state).contains("n0 -> n1;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;

use crate::graph::WorkGraph;
use crate::state::{ItemRef, ItemStatus, MilestoneState};
use crate::units::Progress;

/// Titles longer than this many characters are cut and end in `…`.
pub const MAX_LABEL_CHARS: usize = 100;

/// What a picture shows of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView<'a> {
    /// A human title (the id is shown when it is empty).
    pub title: &'a str,
    /// The node's status.
    pub status: ItemStatus,
    /// Its progress, shown while it is in progress.
    pub progress: Progress,
}

impl NodeView<'_> {
    /// A pending node with no title and no progress.
    pub const PENDING: NodeView<'static> = NodeView {
        title: "",
        status: ItemStatus::Pending,
        progress: Progress::ZERO,
    };
}

/// The milestone's work graph as a Mermaid flowchart, status shown.
pub fn to_mermaid(state: &MilestoneState) -> String {
    graph_to_mermaid(&WorkGraph::from_state(state), |k| view_of(state, k))
}

/// The milestone's work graph as a Graphviz DOT digraph, status shown, titled with the
/// milestone's title.
pub fn to_dot(state: &MilestoneState) -> String {
    graph_to_dot(
        &WorkGraph::from_state(state),
        state.id().as_str(),
        state.title(),
        |k| view_of(state, k),
    )
}

fn view_of<'s>(state: &'s MilestoneState, key: &ItemRef) -> NodeView<'s> {
    let item = state.item(key);
    let title = match key {
        ItemRef::Phase(p) => state.workflow().phase(p.as_str()).map(|p| p.title.as_str()),
        ItemRef::Task(t) => state.task(t.as_str()).map(|t| t.spec.title.as_str()),
    };
    NodeView {
        title: title.unwrap_or(""),
        status: item.map(|i| i.status).unwrap_or_default(),
        progress: item.map(|i| i.progress).unwrap_or_default(),
    }
}

/// The style class of each status: (class name, fill colour, stroke colour).
fn style(status: ItemStatus) -> (&'static str, &'static str, &'static str) {
    match status {
        ItemStatus::Pending => ("pending", "#eeeeee", "#9e9e9e"),
        ItemStatus::InProgress => ("in_progress", "#bbdefb", "#1565c0"),
        ItemStatus::Completed => ("completed", "#c8e6c9", "#2e7d32"),
        ItemStatus::Failed => ("failed", "#ffcdd2", "#c62828"),
        ItemStatus::Blocked => ("blocked", "#ffe0b2", "#ef6c00"),
        ItemStatus::Skipped => ("skipped", "#e0e0e0", "#616161"),
        ItemStatus::Cancelled => ("cancelled", "#d7ccc8", "#4e342e"),
    }
}

/// The second line of a label: `id: status`, plus the progress while in progress.
fn status_line(key: &ItemRef, view: &NodeView<'_>) -> String {
    let mut s = format!("{}: {}", key.as_str(), view.status);
    if view.status == ItemStatus::InProgress && view.progress > Progress::ZERO {
        let _ = write!(s, " {}", view.progress);
    }
    s
}

/// Cuts a title to [`MAX_LABEL_CHARS`] characters; an empty title becomes the id.
fn title_of<'a>(key: &'a ItemRef, view: &NodeView<'a>) -> std::borrow::Cow<'a, str> {
    let t = if view.title.trim().is_empty() {
        key.as_str()
    } else {
        view.title
    };
    match t.char_indices().nth(MAX_LABEL_CHARS) {
        Some((at, _)) => format!("{}…", &t[..at]).into(),
        None => t.into(),
    }
}

/// Escapes text for a double-quoted Mermaid label: characters that could end the string or be
/// read as markup become numeric entity codes; line breaks (including U+2028/U+2029) and other
/// control characters become spaces.
fn mermaid_escape(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("#34;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#38;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            '`' => out.push_str("#96;"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => out.push(' '),
            c => out.push(c),
        }
    }
}

/// Escapes text for a double-quoted DOT string: `\` and `"` are backslash-escaped; line breaks
/// (including U+2028/U+2029) and other control characters become spaces.
fn dot_escape(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => out.push(' '),
            c => out.push(c),
        }
    }
}

/// A work graph as a Mermaid flowchart; `view` (asked once per node) gives each node's title
/// and status. Nodes are `n<index>`; phases are boxes, tasks rounded; each node has the class
/// of its status (`pending`, `in_progress`, `completed`, `failed`, `blocked`, `skipped`,
/// `cancelled`).
pub fn graph_to_mermaid<'a>(
    graph: &WorkGraph,
    mut view: impl FnMut(&ItemRef) -> NodeView<'a>,
) -> String {
    let mut out = String::with_capacity(128 + graph.len() * 80 + graph.edge_count() * 16);
    out.push_str("flowchart TD\n");
    for status in ItemStatus::ALL {
        let (class, fill, stroke) = style(status);
        let dash = if status == ItemStatus::Skipped {
            ",stroke-dasharray:4 3"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "    classDef {class} fill:{fill},stroke:{stroke},color:#212121{dash}"
        );
    }
    for (node, key) in graph.nodes() {
        let v = view(key);
        let (open, close) = match key {
            ItemRef::Phase(_) => ("[\"", "\"]"),
            ItemRef::Task(_) => ("(\"", "\")"),
        };
        let _ = write!(out, "    n{}{open}", node.index());
        mermaid_escape(&mut out, &title_of(key, &v));
        out.push_str("<br/>");
        mermaid_escape(&mut out, &status_line(key, &v));
        let _ = writeln!(out, "{close}:::{}", style(v.status).0);
    }
    for (from, to) in graph.edges() {
        let _ = writeln!(out, "    n{} --> n{}", from.index(), to.index());
    }
    out
}

/// A work graph as a Graphviz DOT digraph named `name` with the caption `title`; `view`
/// (asked once per node) gives each node's title and status. Nodes are `n<index>`; phases
/// are boxes, tasks rounded boxes; the status is the label's second line, the fill colour
/// and the node's `class` attribute (as in [`graph_to_mermaid`]).
pub fn graph_to_dot<'a>(
    graph: &WorkGraph,
    name: &str,
    title: &str,
    mut view: impl FnMut(&ItemRef) -> NodeView<'a>,
) -> String {
    let mut out = String::with_capacity(256 + graph.len() * 120 + graph.edge_count() * 16);
    out.push_str("digraph \"");
    dot_escape(&mut out, name);
    out.push_str("\" {\n    label=\"");
    dot_escape(&mut out, title);
    out.push_str("\";\n    labelloc=t;\n    rankdir=TB;\n");
    out.push_str("    node [shape=box, style=\"filled\", fontname=\"Helvetica\"];\n");
    for (node, key) in graph.nodes() {
        let v = view(key);
        let (class, fill, stroke) = style(v.status);
        let shape_style = match (key, v.status) {
            (ItemRef::Phase(_), ItemStatus::Skipped) => "filled,dashed",
            (ItemRef::Phase(_), _) => "filled",
            (ItemRef::Task(_), ItemStatus::Skipped) => "rounded,filled,dashed",
            (ItemRef::Task(_), _) => "rounded,filled",
        };
        let _ = write!(out, "    n{} [label=\"", node.index());
        dot_escape(&mut out, &title_of(key, &v));
        out.push_str("\\n");
        dot_escape(&mut out, &status_line(key, &v));
        let _ = writeln!(
            out,
            "\", style=\"{shape_style}\", fillcolor=\"{fill}\", color=\"{stroke}\", class=\"{class}\"];"
        );
    }
    for (from, to) in graph.edges() {
        let _ = writeln!(out, "    n{} -> n{};", from.index(), to.index());
    }
    out.push_str("}\n");
    out
}
