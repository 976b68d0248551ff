//! Per-client sign-in policy: which assurance level a client needs, which first factors it
//! accepts, and which scopes and audiences it may be granted.
//!
//! The policy travels with the client, in the Hydra client's `metadata.bridge`, so an operator
//! changes it with the same tool that registers the client; bridge-wide defaults come from the
//! settings. A malformed policy is refused where it is read, with an error that names the field:
//! falling back to the defaults would silently weaken the sign-in of exactly the clients whose
//! owners asked for more.
//!
//! Everything here is a pure decision over data the handlers already hold, so every rule is
//! unit-tested without Hydra or Kratos, and every decision carries the rule that made it for the
//! one `policy_decision` log line.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// The policy format this bridge reads; a policy must say which one it is written for, so a
/// future format is refused instead of half understood.
pub const POLICY_VERSION: u32 = 1;

/// Kratos' authenticator assurance levels, ordered so that "at least" is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum Aal {
    /// One factor.
    #[serde(rename = "aal1")]
    Aal1,
    /// A second factor on top of the first.
    #[serde(rename = "aal2")]
    Aal2,
}

impl Aal {
    /// Kratos' and the ID token's spelling (`acr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Aal::Aal1 => "aal1",
            Aal::Aal2 => "aal2",
        }
    }

    /// Reads Kratos' `authenticator_assurance_level`; anything unknown counts as the lowest
    /// level, so an odd answer can only ever ask for more, never grant more.
    pub fn from_kratos(level: Option<&str>) -> Aal {
        match level {
            Some("aal2") | Some("aal3") => Aal::Aal2,
            _ => Aal::Aal1,
        }
    }
}

impl fmt::Display for Aal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kratos first-factor methods a client may restrict sign-in to. Second factors (`totp`,
/// `lookup_secret`, `webauthn`) are not first factors and are governed by `required_aal`.
const FIRST_FACTORS: &[&str] = &["oidc", "code", "password", "passkey", "saml"];

/// The policy as written in `metadata.bridge` or in the bridge-wide defaults. Unknown fields
/// are refused: a misspelt `requried_aal` must not pass as "no requirement".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenPolicy {
    version: Option<u32>,
    required_aal: Option<Aal>,
    allowed_methods: Option<Vec<String>>,
    allowed_scopes: Option<Vec<String>>,
    allowed_audiences: Option<Vec<String>>,
    hook: Option<bool>,
}

/// The policy in force for one client: the defaults, overridden field by field by the client's
/// own policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientPolicy {
    /// The lowest assurance level a session must have before the login is accepted.
    pub required_aal: Option<Aal>,
    /// First factors the session must have been obtained with; `None` allows any.
    pub allowed_methods: Option<BTreeSet<String>>,
    /// Scopes the client may be granted, on top of Hydra's own client settings; `None` allows
    /// whatever Hydra allows.
    pub allowed_scopes: Option<BTreeSet<String>>,
    /// Access token audiences the client may be granted; `None` allows whatever Hydra allows.
    pub allowed_audiences: Option<BTreeSet<String>>,
    /// Whether the policy hook is asked before this client's login and consent are accepted.
    pub hook: bool,
}

/// Why a written policy cannot be used. The messages name the field and never echo values,
/// which could be anything an operator pasted.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not a JSON object of the policy's shape (unknown field, wrong type).
    #[error("the policy is not a valid bridge policy object: {0}")]
    Shape(String),
    /// No `version`, or one this bridge does not read.
    #[error("the policy's `version` must be {POLICY_VERSION}")]
    Version,
    /// An allowed method that is not a Kratos first factor.
    #[error("`allowed_methods` may only hold Kratos first factors ({})", FIRST_FACTORS.join(", "))]
    Method,
    /// An allow-list that allows nothing, which is certainly a mistake.
    #[error("`{0}` is empty; leave it out to allow everything Hydra allows")]
    EmptyList(&'static str),
}

impl ClientPolicy {
    /// Reads the bridge-wide defaults (a policy object without `version`, or with version 1).
    pub fn defaults_from_json(json: &str) -> Result<ClientPolicy, PolicyError> {
        let written: WrittenPolicy =
            serde_json::from_str(json).map_err(|e| PolicyError::Shape(shape_message(&e)))?;
        if written.version.is_some_and(|v| v != POLICY_VERSION) {
            return Err(PolicyError::Version);
        }
        ClientPolicy::default().overridden_by(written)
    }

    /// The policy for a client whose Hydra `metadata` is `metadata`: the defaults when it has no
    /// `bridge` member, else the defaults overridden by it. The client's policy must carry
    /// `version`, so a policy written for another format is never read as this one.
    pub fn for_client(&self, metadata: Option<&Value>) -> Result<ClientPolicy, PolicyError> {
        let Some(written) = metadata.and_then(|m| m.get("bridge")) else {
            return Ok(self.clone());
        };
        let written = WrittenPolicy::deserialize(written)
            .map_err(|e| PolicyError::Shape(shape_message(&e)))?;
        if written.version != Some(POLICY_VERSION) {
            return Err(PolicyError::Version);
        }
        self.clone().overridden_by(written)
    }

    fn overridden_by(mut self, written: WrittenPolicy) -> Result<ClientPolicy, PolicyError> {
        if let Some(aal) = written.required_aal {
            self.required_aal = Some(aal);
        }
        if let Some(methods) = written.allowed_methods {
            let methods = non_empty("allowed_methods", methods)?;
            if !methods.iter().all(|m| FIRST_FACTORS.contains(&m.as_str())) {
                return Err(PolicyError::Method);
            }
            self.allowed_methods = Some(methods);
        }
        if let Some(scopes) = written.allowed_scopes {
            self.allowed_scopes = Some(non_empty("allowed_scopes", scopes)?);
        }
        if let Some(audiences) = written.allowed_audiences {
            self.allowed_audiences = Some(non_empty("allowed_audiences", audiences)?);
        }
        if let Some(hook) = written.hook {
            self.hook = hook;
        }
        Ok(self)
    }
}

/// serde's message for a policy that does not fit, without the value it quotes: an unknown
/// field is named (field names are safe to show), anything else is described generically.
fn shape_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or_default();
    if text.starts_with("unknown field") {
        text.to_owned()
    } else {
        "a field has the wrong type or value".to_owned()
    }
}

fn non_empty(field: &'static str, values: Vec<String>) -> Result<BTreeSet<String>, PolicyError> {
    let set: BTreeSet<String> = values.into_iter().collect();
    if set.is_empty() {
        Err(PolicyError::EmptyList(field))
    } else {
        Ok(set)
    }
}

/// What the session the browser brings has to offer, as read from Kratos.
#[derive(Debug, Clone)]
pub struct SessionFacts<'a> {
    /// The session's assurance level.
    pub aal: Aal,
    /// The Kratos methods the session was authenticated with (first and second factors).
    pub methods: Vec<&'a str>,
    /// When the session was authenticated, in epoch seconds (`None` when Kratos did not say).
    pub authenticated_at: Option<u64>,
}

/// What the OpenID Connect request asked for, from Hydra's login request.
#[derive(Debug, Clone, Default)]
pub struct RequestedAssurance {
    /// `acr_values` of the authorization request; `aal1` and `aal2` are understood, others are
    /// ignored (as OIDC allows for voluntary acr values).
    pub acr_values: Vec<String>,
    /// `max_age` of the authorization request, in seconds.
    pub max_age: Option<u64>,
}

/// The rule behind a decision, for the `policy_decision` log line and the metric; never
/// personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The session passed every rule.
    Satisfied,
    /// The session's first factor is not one the client allows.
    AllowedMethods,
    /// The session is older than the request's `max_age`.
    MaxAge,
    /// The session is below the assurance the client or the request needs.
    RequiredAal,
    /// A requested scope is outside the client's allow-list.
    ScopeAllowList,
    /// A requested audience is outside the client's allow-list.
    AudienceAllowList,
    /// The policy hook answered (allow or deny).
    Hook,
    /// The policy hook could not be asked or gave no usable answer; the bridge failed closed.
    HookUnavailable,
}

impl Rule {
    /// The rule's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Satisfied => "satisfied",
            Rule::AllowedMethods => "allowed_methods",
            Rule::MaxAge => "max_age",
            Rule::RequiredAal => "required_aal",
            Rule::ScopeAllowList => "scope_allowlist",
            Rule::AudienceAllowList => "audience_allowlist",
            Rule::Hook => "hook",
            Rule::HookUnavailable => "hook_unavailable",
        }
    }
}

/// What to do with a login whose Kratos session is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginDecision {
    /// Accept; `acr` is the level reached, for the ID token.
    Accept {
        /// The session's level.
        acr: Aal,
    },
    /// Send the browser to a Kratos login flow first, keeping the sealed token.
    SignInAgain {
        /// `refresh=true`: a new first factor is needed (wrong method, too old).
        refresh: bool,
        /// `aal=aal2`: a second factor is needed.
        aal: Option<Aal>,
        /// The rule that asked for it.
        rule: Rule,
    },
}

impl ClientPolicy {
    /// The level a login needs: the client's requirement or the request's `acr_values`,
    /// whichever is higher.
    pub fn needed_aal(&self, requested: &RequestedAssurance) -> Aal {
        let asked = requested
            .acr_values
            .iter()
            .filter_map(|v| match v.as_str() {
                "aal2" => Some(Aal::Aal2),
                "aal1" => Some(Aal::Aal1),
                _ => None,
            })
            .max();
        [self.required_aal, asked]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(Aal::Aal1)
    }

    /// Decides a login. The order matters: a session obtained with a method the client does
    /// not allow, or too old for `max_age`, needs a new first factor (`refresh`), and only a
    /// session with the right first factor is worth stepping up to the second.
    pub fn decide_login(
        &self,
        session: &SessionFacts<'_>,
        requested: &RequestedAssurance,
        now: u64,
    ) -> LoginDecision {
        if let Some(allowed) = &self.allowed_methods {
            let has_allowed_first_factor = session.methods.iter().any(|m| allowed.contains(*m));
            if !has_allowed_first_factor {
                return LoginDecision::SignInAgain {
                    refresh: true,
                    aal: None,
                    rule: Rule::AllowedMethods,
                };
            }
        }
        if let Some(max_age) = requested.max_age {
            let fresh_enough = session
                .authenticated_at
                .is_some_and(|at| now.saturating_sub(at) <= max_age);
            if !fresh_enough {
                return LoginDecision::SignInAgain {
                    refresh: true,
                    aal: None,
                    rule: Rule::MaxAge,
                };
            }
        }
        let needed = self.needed_aal(requested);
        if session.aal < needed {
            return LoginDecision::SignInAgain {
                refresh: false,
                aal: Some(needed),
                rule: Rule::RequiredAal,
            };
        }
        LoginDecision::Accept { acr: session.aal }
    }

    /// Checks what a consent would grant against the client's allow-lists. Hydra has already
    /// checked the client's own `scope` and `audience`; this is the bridge's narrower list.
    pub fn check_grant(&self, scopes: &[String], audiences: &[String]) -> Result<(), Rule> {
        let outside = |allowed: &Option<BTreeSet<String>>, asked: &[String]| {
            allowed
                .as_ref()
                .is_some_and(|allowed| asked.iter().any(|a| !allowed.contains(a)))
        };
        if outside(&self.allowed_scopes, scopes) {
            return Err(Rule::ScopeAllowList);
        }
        if outside(&self.allowed_audiences, audiences) {
            return Err(Rule::AudienceAllowList);
        }
        Ok(())
    }
}

/// Writes the one `policy_decision` line of a decision: client, rule and outcome, nothing about
/// the person.
pub fn log_decision(client_id: &str, stage: &'static str, rule: Rule, outcome: &'static str) {
    tracing::info!(
        event = "policy_decision",
        client_id,
        stage,
        rule = rule.as_str(),
        outcome,
        "policy decision"
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts(aal: Aal, methods: &[&'static str], authenticated_at: u64) -> SessionFacts<'static> {
        SessionFacts {
            aal,
            methods: methods.to_vec(),
            authenticated_at: Some(authenticated_at),
        }
    }

    fn client(bridge: Value) -> Result<ClientPolicy, PolicyError> {
        ClientPolicy::default().for_client(Some(&json!({ "bridge": bridge })))
    }

    #[test]
    fn a_client_without_a_policy_gets_the_defaults() {
        let defaults = ClientPolicy::defaults_from_json(r#"{"required_aal":"aal2"}"#).unwrap();
        assert_eq!(defaults.for_client(None).unwrap(), defaults);
        assert_eq!(
            defaults.for_client(Some(&json!({"other": 1}))).unwrap(),
            defaults
        );
    }

    #[test]
    fn a_client_policy_overrides_the_defaults_field_by_field() {
        let defaults =
            ClientPolicy::defaults_from_json(r#"{"required_aal":"aal2","hook":true}"#).unwrap();
        let policy = defaults
            .for_client(Some(
                &json!({"bridge": {"version": 1, "allowed_methods": ["oidc"]}}),
            ))
            .unwrap();
        assert_eq!(policy.required_aal, Some(Aal::Aal2));
        assert!(policy.hook);
        assert_eq!(
            policy.allowed_methods,
            Some(BTreeSet::from(["oidc".to_owned()]))
        );
    }

    #[test]
    fn malformed_policies_are_refused_naming_the_field() {
        assert_eq!(
            client(json!({"required_aal": "aal2"})),
            Err(PolicyError::Version)
        );
        assert_eq!(
            client(json!({"version": 2, "required_aal": "aal2"})),
            Err(PolicyError::Version)
        );
        let misspelt = client(json!({"version": 1, "requried_aal": "aal2"})).unwrap_err();
        assert!(misspelt.to_string().contains("requried_aal"), "{misspelt}");
        assert!(matches!(
            client(json!({"version": 1, "required_aal": "aal9"})),
            Err(PolicyError::Shape(_))
        ));
        assert_eq!(
            client(json!({"version": 1, "allowed_methods": ["totp"]})),
            Err(PolicyError::Method)
        );
        assert_eq!(
            client(json!({"version": 1, "allowed_scopes": []})),
            Err(PolicyError::EmptyList("allowed_scopes"))
        );
        assert!(matches!(client(json!("aal2")), Err(PolicyError::Shape(_))));
    }

    #[test]
    fn shape_errors_do_not_echo_values() {
        let error = client(json!({"version": 1, "allowed_scopes": "secret-looking-value"}))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret-looking-value"), "{error}");
    }

    #[test]
    fn an_aal1_session_on_an_aal2_client_is_stepped_up_never_accepted() {
        let policy = client(json!({"version": 1, "required_aal": "aal2"})).unwrap();
        let decision = policy.decide_login(
            &facts(Aal::Aal1, &["oidc"], 100),
            &RequestedAssurance::default(),
            100,
        );
        assert_eq!(
            decision,
            LoginDecision::SignInAgain {
                refresh: false,
                aal: Some(Aal::Aal2),
                rule: Rule::RequiredAal
            }
        );
        let decision = policy.decide_login(
            &facts(Aal::Aal2, &["oidc", "totp"], 100),
            &RequestedAssurance::default(),
            100,
        );
        assert_eq!(decision, LoginDecision::Accept { acr: Aal::Aal2 });
    }

    #[test]
    fn acr_values_raise_the_level_but_never_lower_it() {
        let asks_aal2 = RequestedAssurance {
            acr_values: vec!["urn:other".into(), "aal2".into()],
            max_age: None,
        };
        assert_eq!(ClientPolicy::default().needed_aal(&asks_aal2), Aal::Aal2);
        let asks_aal1 = RequestedAssurance {
            acr_values: vec!["aal1".into()],
            max_age: None,
        };
        let aal2_client = client(json!({"version": 1, "required_aal": "aal2"})).unwrap();
        assert_eq!(aal2_client.needed_aal(&asks_aal1), Aal::Aal2);
        assert_eq!(
            ClientPolicy::default().needed_aal(&RequestedAssurance::default()),
            Aal::Aal1
        );
    }

    #[test]
    fn a_session_from_a_method_the_client_does_not_allow_signs_in_again() {
        let policy = client(json!({"version": 1, "allowed_methods": ["oidc"]})).unwrap();
        let decision = policy.decide_login(
            &facts(Aal::Aal1, &["code"], 100),
            &RequestedAssurance::default(),
            100,
        );
        assert_eq!(
            decision,
            LoginDecision::SignInAgain {
                refresh: true,
                aal: None,
                rule: Rule::AllowedMethods
            }
        );
        let decision = policy.decide_login(
            &facts(Aal::Aal1, &["oidc"], 100),
            &RequestedAssurance::default(),
            100,
        );
        assert_eq!(decision, LoginDecision::Accept { acr: Aal::Aal1 });
    }

    #[test]
    fn max_age_asks_for_a_fresh_first_factor() {
        let requested = RequestedAssurance {
            acr_values: Vec::new(),
            max_age: Some(60),
        };
        let policy = ClientPolicy::default();
        assert_eq!(
            policy.decide_login(&facts(Aal::Aal1, &["code"], 100), &requested, 160),
            LoginDecision::Accept { acr: Aal::Aal1 }
        );
        assert!(matches!(
            policy.decide_login(&facts(Aal::Aal1, &["code"], 100), &requested, 161),
            LoginDecision::SignInAgain {
                refresh: true,
                rule: Rule::MaxAge,
                ..
            }
        ));
        let unknown_time = SessionFacts {
            authenticated_at: None,
            ..facts(Aal::Aal1, &["code"], 0)
        };
        assert!(matches!(
            policy.decide_login(&unknown_time, &requested, 161),
            LoginDecision::SignInAgain { refresh: true, .. }
        ));
    }

    #[test]
    fn unknown_kratos_levels_count_as_the_lowest() {
        assert_eq!(Aal::from_kratos(Some("aal2")), Aal::Aal2);
        assert_eq!(Aal::from_kratos(Some("aal0")), Aal::Aal1);
        assert_eq!(Aal::from_kratos(None), Aal::Aal1);
    }

    #[test]
    fn grants_outside_the_allow_lists_are_refused() {
        let policy = client(json!({
            "version": 1,
            "allowed_scopes": ["openid", "email"],
            "allowed_audiences": ["https://api.example.com"]
        }))
        .unwrap();
        let scopes = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            policy.check_grant(&scopes(&["openid", "email"]), &[]),
            Ok(())
        );
        assert_eq!(
            policy.check_grant(&scopes(&["openid", "phone"]), &[]),
            Err(Rule::ScopeAllowList)
        );
        assert_eq!(
            policy.check_grant(
                &scopes(&["openid"]),
                &scopes(&["https://other.example.com"])
            ),
            Err(Rule::AudienceAllowList)
        );
        assert_eq!(
            ClientPolicy::default().check_grant(&scopes(&["anything"]), &scopes(&["any"])),
            Ok(())
        );
    }
}
