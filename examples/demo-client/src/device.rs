//! The client side of the OAuth2 device authorization grant (RFC 8628) against Hydra: what a TV
//! or a command-line tool does when it has no browser of its own. It asks Hydra for a device code
//! and a short user code, shows the user code to a person who signs in on another device, and
//! polls the token endpoint until that person has agreed, refused, or let the code expire.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::oauth::{Hydra, TokenError, TokenResponse};

/// `grant_type` of the device access token request (RFC 8628, section 3.4).
pub const DEVICE_CODE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// RFC 8628, section 3.2: a client polls every 5 seconds when the server names no interval.
const DEFAULT_INTERVAL_SECONDS: u64 = 5;

/// RFC 8628, section 3.5: after `slow_down` the interval grows by 5 seconds, for that request
/// and every later one.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Hydra's answer to a device authorization request (RFC 8628, section 3.2): what to show the
/// person and what to poll with.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    /// Secret of this device; only ever sent back to the token endpoint, never shown.
    pub device_code: String,
    /// The short code the person types on the verification page.
    pub user_code: String,
    /// Where the person goes to type the user code.
    pub verification_uri: String,
    /// The same page with the user code filled in (for a QR code or a link), when Hydra offers it.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Lifetime of both codes, in seconds.
    pub expires_in: u64,
    /// Minimum seconds between two polls; 5 when Hydra does not say (RFC 8628, section 3.2).
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECONDS
}

/// The outcome of one poll that does not end the grant in failure.
#[derive(Debug, Clone)]
pub enum DevicePoll {
    /// `authorization_pending`: the person has not finished yet; poll again after the interval.
    Pending,
    /// `slow_down`: poll again, with the interval 5 seconds longer from now on.
    SlowDown,
    /// The person agreed; these are the tokens.
    Granted(TokenResponse),
}

/// Why waiting for the device grant ended without tokens.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Hydra refused (`access_denied` when the person said no, `expired_token` when the codes
    /// ran out, anything else is a client or server problem) or could not be reached.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The caller's `max_wait` passed while the person had still not finished.
    #[error("gave up waiting: the sign-in was not finished in time")]
    TimedOut,
}

/// How often to poll; a parameter rather than constants so tests can run the loop in
/// milliseconds.
#[derive(Debug, Clone, Copy)]
struct PollTiming {
    interval: Duration,
    slow_down_step: Duration,
}

impl Hydra {
    /// Starts a device grant: `POST <hydra>/oauth2/device/auth` with the public client's
    /// `client_id` and the wanted `scope` (RFC 8628, section 3.1). A refusal (unknown client, a
    /// client not allowed the device grant, a scope it may not ask for) is
    /// [`TokenError::Rejected`].
    pub async fn start_device_authorization(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization, TokenError> {
        self.post_form(
            "/oauth2/device/auth",
            &[("client_id", client_id), ("scope", scope)],
        )
        .await
    }

    /// One device access token request (RFC 8628, section 3.4). The two answers that mean "not
    /// yet" are [`DevicePoll`] values so a caller can keep polling; every other refusal
    /// (`access_denied`, `expired_token`, ...) is [`TokenError::Rejected`] because it ends the
    /// grant.
    pub async fn poll_device_token(
        &self,
        client_id: &str,
        device_code: &str,
    ) -> Result<DevicePoll, TokenError> {
        let answer = self
            .post_form(
                "/oauth2/token",
                &[
                    ("grant_type", DEVICE_CODE_GRANT_TYPE),
                    ("device_code", device_code),
                    ("client_id", client_id),
                ],
            )
            .await;
        match answer {
            Ok(tokens) => Ok(DevicePoll::Granted(tokens)),
            Err(refusal) => match refusal.error_code() {
                Some("authorization_pending") => Ok(DevicePoll::Pending),
                Some("slow_down") => Ok(DevicePoll::SlowDown),
                _ => Err(refusal),
            },
        }
    }

    /// Polls every `authorization.interval` seconds (5 seconds more after each `slow_down`, RFC
    /// 8628 section 3.5) until the person agrees (the tokens), refuses or lets the codes expire
    /// ([`DeviceError::Token`] with `access_denied` or `expired_token`), or `max_wait` would
    /// pass before the next poll ([`DeviceError::TimedOut`]). The first poll comes after one
    /// interval, since nobody can have typed the code sooner. An interval of 0 is taken as 1
    /// second so a misconfigured server cannot make this loop hammer it.
    pub async fn wait_for_device_tokens(
        &self,
        client_id: &str,
        authorization: &DeviceAuthorization,
        max_wait: Duration,
    ) -> Result<TokenResponse, DeviceError> {
        let timing = PollTiming {
            interval: Duration::from_secs(authorization.interval.max(1)),
            slow_down_step: SLOW_DOWN_STEP,
        };
        self.poll_until_decided(client_id, &authorization.device_code, timing, max_wait)
            .await
    }

    async fn poll_until_decided(
        &self,
        client_id: &str,
        device_code: &str,
        timing: PollTiming,
        max_wait: Duration,
    ) -> Result<TokenResponse, DeviceError> {
        let started = Instant::now();
        let mut interval = timing.interval;
        loop {
            if started.elapsed() + interval > max_wait {
                return Err(DeviceError::TimedOut);
            }
            tokio::time::sleep(interval).await;
            match self.poll_device_token(client_id, device_code).await? {
                DevicePoll::Granted(tokens) => return Ok(tokens),
                DevicePoll::Pending => {}
                DevicePoll::SlowDown => interval += timing.slow_down_step,
            }
        }
    }
}

/// The user code as a person reads it best: split in two halves by a dash (`ABCDEFGH` becomes
/// `ABCD-EFGH`). The bridge's verification page drops dashes and spaces and accepts lower case,
/// so the dash costs nothing when typed. Codes shorter than 6 characters, or that already carry
/// something other than letters and digits, are shown as they are.
pub fn readable_user_code(user_code: &str) -> String {
    let chars: Vec<char> = user_code.chars().collect();
    if chars.len() < 6 || !chars.iter().all(char::is_ascii_alphanumeric) {
        return user_code.to_owned();
    }
    let (first, second) = chars.split_at(chars.len().div_ceil(2));
    format!(
        "{}-{}",
        first.iter().collect::<String>(),
        second.iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests;
