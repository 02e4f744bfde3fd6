//! milestone-git: skeleton, filled by a later issue.
