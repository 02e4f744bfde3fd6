//! Workloads and baselines shared by the criterion benchmarks in `benches/benches/`.

pub mod floor;
pub mod graph_workloads;
pub mod workloads;
