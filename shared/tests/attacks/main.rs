//! Attacks on every handler, in-process, with the testkit fakes.
//!
//! Each test plays one category of attack (tampered tokens, open redirects, CSRF, forged scopes,
//! injection, oversized input) and ends with one line
//! `attacks: <category> <n> tried, <n> refused, <n> accepted`, printed and, when
//! `BRIDGE_SECURITY_REPORT` names a file, appended to it so `./scripts/test` can summarise. A
//! test fails, listing what got through, as soon as one attempt is accepted.
//!
//! Every response any attack produces also goes through [`violations`], which checks what must
//! hold for all responses of all handlers: no 500, only known headers, no CR/LF in a header, a
//! `Location` only on Hydra's public origin or Kratos' login flow, only our own well-formed
//! cookies, and pages whose tags, attributes and links are the templates' own.
//!
//! The categories live in one module each; `common` and `checks` hold what they share.

mod checks;
mod common;
mod consent_forms;
mod injection;
mod oversized;
mod policy;
mod redirects;
mod tokens;
