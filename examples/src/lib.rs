//! The runnable examples of `milestone`, as library functions so that the test suite runs
//! every one of them (`examples/examples/*.rs` are thin `main`s over these).

pub mod complex_agents;
pub mod custom_runner;
pub mod hybrid;
pub mod kiro_demo;
pub mod resume;
pub mod run_spec;
pub mod simple_direct;
