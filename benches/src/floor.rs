//! The floor: the least a scheduler of no-op tasks can do in process — an in-degree scheduler
//! driving no-op futures on `futures::stream::FuturesUnordered` with a concurrency limit, run
//! with `futures::executor::block_on`. Benchmarks report other schedulers as multiples of it.
//!
//! ```
//! use milestone_benches::{floor::{Graph, run}, workloads};
//! let g = Graph::new(&workloads::w3())?;
//! assert_eq!(run(&g, 64), 10_000);
//! # Ok::<(), workloads::WorkloadError>(())
//! ```

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::workloads::{Workload, WorkloadError};

/// A workload prepared for the floor: in-degrees and dependents.
#[derive(Debug, Clone)]
pub struct Graph {
    indegree: Vec<u32>,
    dependents: Vec<Vec<u32>>,
}

impl Graph {
    /// Prepares `w` (not part of what the floor measures).
    ///
    /// # Errors
    /// [`WorkloadError`] if a dependency is not an earlier task.
    pub fn new(w: &Workload) -> Result<Graph, WorkloadError> {
        w.check()?;
        let mut dependents = vec![Vec::new(); w.len()];
        let mut indegree = vec![0u32; w.len()];
        for (i, deps) in w.deps.iter().enumerate() {
            indegree[i] = deps.len() as u32;
            for &d in deps {
                dependents[d as usize].push(i as u32);
            }
        }
        Ok(Graph {
            indegree,
            dependents,
        })
    }

    /// How many tasks it has.
    pub fn len(&self) -> usize {
        self.indegree.len()
    }

    /// Whether it has no task.
    pub fn is_empty(&self) -> bool {
        self.indegree.is_empty()
    }
}

/// Runs every task of `g` as a no-op future, at most `limit` at once, each after its
/// dependencies; returns how many ran.
pub fn run(g: &Graph, limit: usize) -> usize {
    let limit = limit.max(1);
    let mut indegree = g.indegree.clone();
    let mut ready: Vec<u32> = (0..indegree.len() as u32)
        .rev()
        .filter(|&i| indegree[i as usize] == 0)
        .collect();
    futures::executor::block_on(async {
        let mut running = FuturesUnordered::new();
        let mut done = 0;
        loop {
            while running.len() < limit {
                let Some(i) = ready.pop() else { break };
                running.push(async move { i });
            }
            let Some(i) = running.next().await else { break };
            done += 1;
            for &d in &g.dependents[i as usize] {
                let n = &mut indegree[d as usize];
                *n -= 1;
                if *n == 0 {
                    ready.push(d);
                }
            }
        }
        done
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads;

    #[test]
    fn runs_every_task_exactly_once() {
        for w in workloads::all() {
            let g = Graph::new(&w).unwrap();
            for limit in [1, 3, 64] {
                assert_eq!(run(&g, limit), w.len(), "{} limit {limit}", w.name);
            }
        }
    }

    #[test]
    fn a_dependency_out_of_range_is_an_error_not_a_panic() {
        let w = workloads::Workload {
            name: "bad",
            deps: vec![vec![], vec![7]],
        };
        let err = Graph::new(&w).unwrap_err();
        assert_eq!(err.bad, vec![(1, 7)]);
        assert_eq!(
            err.to_string(),
            "dependencies that are not earlier tasks: task 1 on 7"
        );
    }
}
