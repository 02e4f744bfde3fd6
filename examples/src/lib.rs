//! The runnable examples of `milestone`, as library functions so that the test suite runs
//! every one of them (`examples/examples/*.rs` are thin `main`s over these).

pub mod complex_agents;
pub mod custom_runner;
pub mod hybrid;
pub mod kiro_demo;
pub mod resume;
pub mod run_spec;
pub mod simple_direct;
pub mod support;

pub use support::Out;

/// The workspace's `target/` directory, wherever an example is run from: `CARGO_TARGET_DIR`
/// when set, else `target/` beside the workspace's `Cargo.toml`. Examples keep their stores
/// under it so that nothing lands in the source tree.
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            manifest.parent().unwrap_or(manifest).join("target")
        })
}

/// The README's code, run as doctests so that it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
