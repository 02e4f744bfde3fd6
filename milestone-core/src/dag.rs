//! Small graph algorithms over dense indices, shared by workflows and the work graph.

/// Finds one cycle in a directed graph of `n` nodes where `succ(i)` lists the nodes `i` points
/// to. Returns the cycle as a path `[v0, v1, …, vk]` where each node points to the next and
/// `vk` points back to `v0`; `None` when the graph is acyclic. Iterative: deep graphs cannot
/// overflow the stack.
pub fn find_cycle<I, F>(n: usize, mut succ: F) -> Option<Vec<usize>>
where
    F: FnMut(usize) -> I,
    I: Iterator<Item = usize>,
{
    const WHITE: u8 = 0;
    const GREY: u8 = 1;
    const BLACK: u8 = 2;
    let mut color = vec![WHITE; n];
    let mut stack: Vec<(usize, I)> = Vec::new();
    for root in 0..n {
        if color[root] != WHITE {
            continue;
        }
        color[root] = GREY;
        stack.push((root, succ(root)));
        while let Some((node, iter)) = stack.last_mut() {
            let node = *node;
            match iter.next() {
                Some(next) if next < n => match color[next] {
                    WHITE => {
                        color[next] = GREY;
                        let it = succ(next);
                        stack.push((next, it));
                    }
                    GREY => {
                        let start = stack.iter().position(|(v, _)| *v == next).unwrap_or(0);
                        return Some(stack[start..].iter().map(|(v, _)| *v).collect());
                    }
                    _ => {}
                },
                Some(_) => {}
                None => {
                    color[node] = BLACK;
                    stack.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle_of(edges: &[(usize, usize)], n: usize) -> Option<Vec<usize>> {
        let adj: Vec<Vec<usize>> = (0..n)
            .map(|i| edges.iter().filter(|e| e.0 == i).map(|e| e.1).collect())
            .collect();
        find_cycle(n, |i| adj[i].clone().into_iter())
    }

    fn is_cycle(path: &[usize], edges: &[(usize, usize)]) -> bool {
        !path.is_empty()
            && (0..path.len()).all(|k| edges.contains(&(path[k], path[(k + 1) % path.len()])))
    }

    #[test]
    fn finds_real_cycles() {
        assert_eq!(cycle_of(&[(0, 1), (1, 2)], 3), None);
        let e = [(0, 1), (1, 2), (2, 0)];
        assert!(is_cycle(&cycle_of(&e, 3).unwrap(), &e));
        let e = [(0, 0)];
        assert_eq!(cycle_of(&e, 1), Some(vec![0]));
        let e = [(0, 1), (1, 2), (2, 3), (3, 1), (4, 0)];
        assert!(is_cycle(&cycle_of(&e, 5).unwrap(), &e));
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let n = 200_000;
        assert_eq!(
            find_cycle(n, |i| (i + 1 < n).then_some(i + 1).into_iter()),
            None
        );
    }
}
