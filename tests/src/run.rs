//! Runs one scenario: finds the stack, hands out browsers, and at the end (pass or fail) saves a
//! screenshot of every browser to `target/test-results/screenshots/<test>[-<n>].png`, plus the
//! page source next to it when the scenario failed, then closes the browsers.

use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::browser::{results_dir, Browser};
use crate::stack::Stack;

/// What a scenario gets: the stack and a way to open browsers.
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The test's name (file names of its artefacts).
    pub name: &'static str,
    /// The stack the scenario runs against.
    pub stack: Stack,
    browsers: Arc<Mutex<Vec<Browser>>>,
}

impl Ctx {
    /// Opens a new browser: fresh profile, no cookies, own chromedriver.
    pub async fn browser(&self) -> Browser {
        let n = self.browsers.lock().map(|b| b.len() + 1).unwrap_or(1);
        let label = if n == 1 {
            self.name.to_owned()
        } else {
            format!("{}-{n}", self.name)
        };
        let browser = Browser::launch(&label, self.stack.clone()).await;
        if let Ok(mut browsers) = self.browsers.lock() {
            browsers.push(browser.clone());
        }
        browser
    }

    /// Another stack's context (same artefact names), for scenarios that use two stacks.
    pub fn with_stack(&self, stack: Stack) -> Self {
        Self {
            name: self.name,
            stack,
            browsers: self.browsers.clone(),
        }
    }
}

/// Runs `scenario` against the main stack.
pub async fn e2e<F, Fut>(name: &'static str, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stack = Stack::main().await;
    run(name, stack, scenario).await;
}

/// Runs `scenario` against the short-TTL stack (`$BRIDGE_STACK_ENV_SHORT_TTL`).
pub async fn e2e_short_ttl<F, Fut>(name: &'static str, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stack = Stack::short_ttl().await;
    run(name, stack, scenario).await;
}

async fn run<F, Fut>(name: &'static str, stack: Stack, scenario: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ctx = Ctx {
        name,
        stack,
        browsers: Arc::default(),
    };
    let started = std::time::Instant::now();
    // A task of its own, so that a panic in the scenario still leaves us here to take the
    // screenshots.
    let outcome = tokio::spawn(scenario(ctx.clone())).await;
    let failed = outcome.is_err();
    let browsers: Vec<Browser> = ctx
        .browsers
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default();
    save_artefacts(&browsers, failed).await;
    for browser in browsers {
        let _ = browser.client.clone().close().await;
    }
    eprintln!(
        "[e2e] {name}: {} in {:.1} s",
        if failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64()
    );
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("scenario {name} did not finish: {error}"),
        }
    }
}

async fn save_artefacts(browsers: &[Browser], failed: bool) {
    let dir = results_dir().join("screenshots");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    for browser in browsers {
        if let Some(png) = browser.screenshot().await {
            let path = dir.join(format!("{}.png", browser.label));
            match std::fs::write(&path, png) {
                Ok(()) => eprintln!("[e2e] screenshot {}", path.display()),
                Err(e) => eprintln!("[e2e] cannot write {}: {e}", path.display()),
            }
        }
        let source_path = dir.join(format!("{}.html", browser.label));
        if !failed {
            // A page source is only kept for a failure; drop one left by an earlier run.
            let _ = std::fs::remove_file(&source_path);
        } else {
            let url = browser
                .client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            eprintln!("[e2e] {} ended at {url}", browser.label);
            if let Some(source) = browser.source().await {
                if std::fs::write(&source_path, source).is_ok() {
                    eprintln!("[e2e] page source {}", source_path.display());
                }
            }
        }
    }
}
