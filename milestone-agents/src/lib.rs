//! milestone-agents: skeleton, filled by a later issue.
