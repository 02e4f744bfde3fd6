//! Reserved for the `picture` module (in progress on its own branch).
