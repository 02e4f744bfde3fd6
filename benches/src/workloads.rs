//! The three no-op workloads of DESIGN.md, as plain dependency lists (independent of the
//! engine, so every scheduler under test reads the same graphs).
//!
//! - **W1**: 10,000 independent tasks.
//! - **W2**: a chain of 2,000 tasks.
//! - **W3**: 50 layers × 200 tasks, each depending on 3 tasks of the layer before.
//!
//! ```
//! let w3 = milestone_benches::workloads::w3();
//! assert_eq!(w3.len(), 10_000);
//! assert!(w3.deps[200..].iter().all(|d| d.len() == 3));
//! ```

/// A task graph: task `i` depends on the tasks `deps[i]`, all of which come before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// A short name (`W1`, `W2`, `W3`).
    pub name: &'static str,
    /// The dependencies of each task, as indices of earlier tasks.
    pub deps: Vec<Vec<u32>>,
}

impl Workload {
    /// How many tasks it has.
    pub fn len(&self) -> usize {
        self.deps.len()
    }

    /// Whether it has no task.
    pub fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    /// How many dependency edges it has.
    pub fn edges(&self) -> usize {
        self.deps.iter().map(Vec::len).sum()
    }
}

/// W1: 10,000 independent tasks.
pub fn w1() -> Workload {
    Workload {
        name: "W1",
        deps: vec![Vec::new(); 10_000],
    }
}

/// W2: a chain of 2,000 tasks, each depending on the one before.
pub fn w2() -> Workload {
    Workload {
        name: "W2",
        deps: (0..2_000u32)
            .map(|i| if i == 0 { Vec::new() } else { vec![i - 1] })
            .collect(),
    }
}

/// W3: 50 layers of 200 tasks; task `j` of a layer depends on tasks `j`, `j + 67` and
/// `j + 133` (modulo 200) of the layer before: three distinct tasks, spread over the layer.
pub fn w3() -> Workload {
    const LAYERS: u32 = 50;
    const WIDTH: u32 = 200;
    let mut deps = Vec::with_capacity((LAYERS * WIDTH) as usize);
    for layer in 0..LAYERS {
        for j in 0..WIDTH {
            if layer == 0 {
                deps.push(Vec::new());
            } else {
                let base = (layer - 1) * WIDTH;
                deps.push(vec![
                    base + j,
                    base + (j + 67) % WIDTH,
                    base + (j + 133) % WIDTH,
                ]);
            }
        }
    }
    Workload { name: "W3", deps }
}

/// W1, W2 and W3.
pub fn all() -> [Workload; 3] {
    [w1(), w2(), w3()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_design() {
        let [a, b, c] = all();
        assert_eq!((a.len(), a.edges()), (10_000, 0));
        assert_eq!((b.len(), b.edges()), (2_000, 1_999));
        assert_eq!((c.len(), c.edges()), (10_000, 49 * 200 * 3));
        for w in [&a, &b, &c] {
            for (i, d) in w.deps.iter().enumerate() {
                assert!(d.iter().all(|&x| (x as usize) < i), "{} task {i}", w.name);
                let mut s = d.clone();
                s.dedup();
                assert_eq!(s.len(), d.len(), "{} task {i} has a duplicate", w.name);
            }
        }
    }
}
