//! Task lists for graph and scheduling benchmarks: the three workloads of DESIGN.md and sized
//! variants of them.
//!
//! - W1: `n` independent tasks.
//! - W2: a chain of `n` tasks, each depending on the one before.
//! - W3: `layers` layers of `width` tasks, each depending on 3 tasks of the layer before.
//!
//! Ids are `t0`, `t1`, … in the order tasks are listed, which is always a dependency order.

use milestone_core::{IdError, TaskId, TaskSpec};

fn spec(i: usize, deps: impl IntoIterator<Item = usize>) -> Result<TaskSpec, IdError> {
    let mut t = TaskSpec::new(TaskId::new(format!("t{i}"))?, format!("Task {i}"));
    t.estimate_ms = Some(1_000 + (i as u64 % 7) * 250);
    for d in deps {
        t.dependencies.push(TaskId::new(format!("t{d}"))?);
    }
    Ok(t)
}

/// W1: `n` tasks without dependencies.
///
/// # Errors
/// Never in practice: the generated ids are valid.
pub fn independent(n: usize) -> Result<Vec<TaskSpec>, IdError> {
    (0..n).map(|i| spec(i, [])).collect()
}

/// W2: a chain of `n` tasks.
///
/// # Errors
/// Never in practice: the generated ids are valid.
pub fn chain(n: usize) -> Result<Vec<TaskSpec>, IdError> {
    (0..n).map(|i| spec(i, i.checked_sub(1))).collect()
}

/// W3: `layers` × `width` tasks; each task after the first layer depends on 3 tasks of the
/// layer before (spread across it, so fan-out is even).
///
/// # Errors
/// Never in practice: the generated ids are valid.
pub fn layered(layers: usize, width: usize) -> Result<Vec<TaskSpec>, IdError> {
    let mut out = Vec::with_capacity(layers * width);
    for l in 0..layers {
        for w in 0..width {
            let i = l * width + w;
            let deps: Vec<usize> = if l == 0 || width == 0 {
                Vec::new()
            } else {
                let prev = (l - 1) * width;
                let mut d = vec![
                    prev + w,
                    prev + (w + 1) % width,
                    prev + (w + width / 2) % width,
                ];
                d.sort_unstable();
                d.dedup();
                d
            };
            out.push(spec(i, deps)?);
        }
    }
    Ok(out)
}

/// The W3 shape grown to about `n` tasks: layers of 200 tasks (the last layer may be short).
///
/// # Errors
/// Never in practice: the generated ids are valid.
pub fn layered_n(n: usize) -> Result<Vec<TaskSpec>, IdError> {
    let mut tasks = layered(n.div_ceil(200), 200)?;
    tasks.truncate(n);
    Ok(tasks)
}
