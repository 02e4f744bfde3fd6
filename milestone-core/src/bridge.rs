//! Reserved for the `bridge` module (in progress on its own branch).
