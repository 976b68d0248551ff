//! `doctor`: checks the live setup with the functions' own settings (environment variables, as
//! README.md's Settings table lists them). Exit status 1 when any check fails.
//!
//! `doctor policy-hook-keys` instead prints the policy hook's verification keys
//! (`HOOK_SIGNING_KEYS=kid:hex,...`, docs/policy.md) from the same key set settings.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("policy-hook-keys") {
        return match doctor::policy_hook_keys(|name| std::env::var(name).ok()).await {
            Ok(line) => {
                println!("{line}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("doctor: cannot read the key set: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let checks = doctor::run(|name| std::env::var(name).ok()).await;
    for check in &checks {
        println!("{}", check.line());
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    println!(
        "doctor: {} of {} checks passed",
        checks.len() - failed,
        checks.len()
    );
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
