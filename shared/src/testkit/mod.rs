//! The one test kit: in-memory Hydra and Kratos written against the bridge's traits, a fixed
//! configuration, key set and clock, request builders and the checks responses must pass.
//!
//! Unit tests, the integration tests in `shared/tests/` and the fuzz targets all build on it, so
//! a fake behaves the same wherever a test uses it. It is compiled for the crate's own tests and
//! behind the `testkit` feature, which only test code enables: the function binaries depend on
//! `bridge-shared` without it and never contain a fake.

mod assert;
mod crypto;
mod hook;
mod hydra;
mod kit;
mod kratos;
mod report;
mod requests;
mod setup;
mod store;

pub use assert::*;
pub use crypto::*;
pub use hook::*;
pub use hydra::*;
pub use kit::*;
pub use kratos::*;
pub use report::*;
pub use requests::*;
pub use setup::*;
pub use store::*;
