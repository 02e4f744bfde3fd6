//! Reserved for the scheduling engine (in progress on its own branch).
