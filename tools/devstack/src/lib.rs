//! Helpers for the local development stack (see `scripts/lib/stack.sh`).

pub mod sms;
pub mod table;
