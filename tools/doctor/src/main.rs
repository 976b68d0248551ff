//! `doctor`: checks the live setup with the functions' own settings (environment variables, as
//! README.md's Settings table lists them). Exit status 1 when any check fails.

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
