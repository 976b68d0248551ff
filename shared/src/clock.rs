//! Time as the bridge reads it: an injectable clock, and seconds since the Unix epoch, the unit
//! of token claims, replay records and attempt windows.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The clock handlers read, injectable so tests can expire tokens and sessions.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Time since the Unix epoch, `None` for a reading before 1970 (which no real clock gives, but a
/// test or a broken host can): each caller decides whether that is an error or zero.
pub fn since_epoch(now: SystemTime) -> Option<Duration> {
    now.duration_since(SystemTime::UNIX_EPOCH).ok()
}

/// Whole seconds since the Unix epoch; `None` before 1970 (see [`since_epoch`]).
pub fn epoch_seconds(now: SystemTime) -> Option<u64> {
    since_epoch(now).map(|elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_before_and_after_1970() {
        let later = SystemTime::UNIX_EPOCH + Duration::from_millis(90_500);
        assert_eq!(epoch_seconds(later), Some(90));
        assert_eq!(epoch_seconds(SystemTime::UNIX_EPOCH), Some(0));
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(since_epoch(before), None);
        assert_eq!(epoch_seconds(before), None);
    }
}
