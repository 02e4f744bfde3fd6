//! Reserved for the `graph` module (in progress on its own branch).
