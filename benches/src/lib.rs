//! Workloads and baselines shared by the criterion benchmarks in `benches/benches/`.

pub mod floor;
pub mod hosts;
pub mod least;
pub mod workloads;
