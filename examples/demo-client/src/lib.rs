//! Demo OAuth2/OpenID Connect relying party for trying the bridge end to end, as a library so
//! other crates (end-to-end tests) can drive the same client code the binary runs: the web app's
//! authorization code flow ([`app`], [`oauth`]) and the device authorization grant ([`device`]).

pub mod app;
pub mod device;
pub mod oauth;

#[cfg(test)]
mod tests;
