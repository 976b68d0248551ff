//! The security report the attack and stack suites write.

use std::io::Write as _;

/// Prints `line` and, when `BRIDGE_SECURITY_REPORT` names a file, appends it there, so
/// `./scripts/test` can summarise what the security suites tried.
pub fn report(line: &str) {
    println!("{line}");
    if let Some(path) = std::env::var_os("BRIDGE_SECURITY_REPORT") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}
