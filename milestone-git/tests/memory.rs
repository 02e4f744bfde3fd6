//! The conformance suite against `InMemoryGit`, directly and through `Arc<dyn GitBackend>`.

use std::sync::Arc;

use futures::executor::block_on;
use milestone_git::testing::{self, Capabilities};
use milestone_git::{GitBackend, InMemoryGit};

#[test]
fn conformance_in_memory() {
    for name in testing::ALL {
        let git = InMemoryGit::new();
        block_on(testing::run(name, &git, Capabilities::IN_MEMORY));
    }
}

#[test]
fn conformance_in_memory_through_arc_dyn() {
    for name in testing::ALL {
        let git: Arc<dyn GitBackend> = Arc::new(InMemoryGit::new());
        block_on(testing::run(name, &git, Capabilities::IN_MEMORY));
    }
}
