//! The shared library of the Hydra <-> Kratos login bridge.
//!
//! Every function crate is a thin `main` around handlers defined here, so the whole flow can be
//! exercised in-process by tests without a Lambda runtime.
