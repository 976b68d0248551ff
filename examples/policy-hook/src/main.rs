//! The reference policy hook as a Lambda function (behind an API Gateway HTTP API or a function
//! URL), and locally under `cargo lambda watch` at `POST /policy-hook`. Its settings are read
//! once at start-up; a bad one stops it with a message naming the variable.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let hook = policy_hook::Hook::from_lookup(|name| std::env::var(name).ok())?;
    let hook = &hook;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(hook.handle(&request, policy_hook::unix_now()))
    }))
    .await
}
