//! milestone-state: skeleton, filled by a later issue.
