//! The shared library of the Hydra <-> Kratos login bridge.
//!
//! Every function crate is a thin `main` around handlers defined here, so the whole flow can be
//! exercised in-process by tests without a Lambda runtime.

pub mod attempts;
pub mod aws_http;
pub mod bootstrap;
pub mod claims;
pub mod clock;
pub mod config;
pub mod digest;
pub mod dynamo;
pub mod handlers;
pub mod hook;
pub mod hs256;
pub mod hydra;
pub mod identity;
pub mod keyset;
pub mod keysource;
pub mod kratos;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod random;
pub mod replay;
pub mod request;
pub mod response;
pub mod runtime;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod token;
pub mod upstream;
