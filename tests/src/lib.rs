//! End-to-end harness: the real local stack (Kratos, Hydra, the functions under `cargo lambda
//! watch`, the reference login site, the demo client, mock Google, the SMS sink), driven through
//! a real headless Chromium by WebDriver.
//!
//! The stack is never optional: without it every scenario panics with "end-to-end tests need
//! the local stack: run ./scripts/test". The scenarios are `#[ignore]`d so that a plain
//! `cargo test --workspace` needs no services; `./scripts/test` runs them with the stack up.

pub mod browser;
pub mod run;
pub mod stack;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use browser::{same_origin, Browser, Document, History, Mark};
pub use run::{e2e, e2e_short_ttl, Ctx};
pub use stack::{GoogleUser, Stack, NEEDS_STACK, WAIT};

/// A name nobody used before: `tag`, time, process and a counter.
pub fn unique_id(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{nanos:x}-{}-{n}", std::process::id()).to_ascii_lowercase()
}

/// A mobile number nobody used before, E.164 (+49 151 and eight digits, a valid German
/// mobile range).
pub fn unique_phone() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 20) ^ n.wrapping_mul(7919);
    format!("+49151{:08}", mixed % 100_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_values_differ_and_phones_are_e164() {
        assert_ne!(unique_id("a"), unique_id("a"));
        let phone = unique_phone();
        assert!(phone.starts_with("+49151") && phone.len() == 14, "{phone}");
        assert!(phone[1..].bytes().all(|b| b.is_ascii_digit()));
    }
}
