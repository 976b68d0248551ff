//! CloudWatch metrics as embedded metric format (EMF) log lines, derived from the `event` log
//! lines the handlers already write.
//!
//! EMF costs no API call and no extension: CloudWatch Logs extracts the metric from a JSON line
//! in the function's log group. Deriving the metrics from the `event` field, in this one table,
//! keeps handlers free of metric calls and makes a metric impossible to forget when an event
//! already exists: every line whose `event` is in [`RULES`] also produces one EMF line.
//!
//! An EMF line copies only the event name, the flow id, Lambda's request and trace ids and the
//! dimension values, which come from fixed vocabularies (`method`, `upstream`): never a free-text
//! field, so nothing the log rules forbid can reach a metric line.

use std::fmt;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::clock::since_epoch;
use crate::logging::{InvocationIds, JsonObject};

/// Namespace when `BRIDGE_METRICS_NAMESPACE` is not set (local runs).
pub const DEFAULT_NAMESPACE: &str = "HydraKratosBridge";

/// Where the metrics go and under which function name, read at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsSettings {
    /// CloudWatch namespace: `BRIDGE_METRICS_NAMESPACE`, default [`DEFAULT_NAMESPACE`]. The
    /// template sets `HydraKratosBridge/<stack>` so that two stacks in one account never add up.
    pub namespace: String,
    /// The `FunctionName` dimension: `AWS_LAMBDA_FUNCTION_NAME`, which Lambda (and
    /// `cargo lambda watch`) set.
    pub function_name: String,
}

impl MetricsSettings {
    /// Reads both settings through `lookup`; missing values fall back to defaults.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            namespace: non_empty("BRIDGE_METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            function_name: non_empty("AWS_LAMBDA_FUNCTION_NAME")
                .unwrap_or_else(|| "unknown".to_owned()),
        }
    }
}

/// Where a metric's extra dimension comes from.
#[derive(Debug, Clone, Copy)]
pub enum Detail {
    /// No dimension besides `FunctionName`.
    None,
    /// The dimension `name` takes the value of the event's field `field`.
    Field {
        /// Dimension name.
        name: &'static str,
        /// Log field holding its value.
        field: &'static str,
    },
    /// The dimension `name` always has `value` for this event.
    Fixed {
        /// Dimension name.
        name: &'static str,
        /// Its value.
        value: &'static str,
    },
}

/// One row of the table: the event that counts, the metric it counts into and how.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The `event` field value.
    pub event: &'static str,
    /// The CloudWatch metric name (unit `Count`, value 1 per event).
    pub metric: &'static str,
    /// The extra dimension, if any.
    pub detail: Detail,
    /// Counted only when the event's `failure` field is one of these (empty: always).
    pub only_failures: &'static [&'static str],
}

/// Upstream failures that are the upstream's fault: an unknown or expired challenge is the
/// user's stale link, not an outage, and is not counted.
const UPSTREAM_FAULTS: &[&str] = &["unavailable", "refused", "malformed"];

const fn upstream_failure(event: &'static str) -> Rule {
    Rule {
        event,
        metric: "UpstreamFailures",
        detail: Detail::Field {
            name: "Upstream",
            field: "upstream",
        },
        only_failures: UPSTREAM_FAULTS,
    }
}

const fn count(event: &'static str, metric: &'static str, detail: Detail) -> Rule {
    Rule {
        event,
        metric,
        detail,
        only_failures: &[],
    }
}

/// The events that are metrics. Names here are what infra/template.yaml alarms on and graphs.
pub const RULES: &[Rule] = &[
    count(
        "login_accepted",
        "LoginAccepted",
        Detail::Field {
            name: "Method",
            field: "method",
        },
    ),
    count("login_redirected_to_kratos", "LoginStarted", Detail::None),
    count("login_sso", "LoginStarted", Detail::None),
    count("replay_rejected", "ReplayRejected", Detail::None),
    count("binding_mismatch", "BindingMismatch", Detail::None),
    count(
        "consent_accepted",
        "ConsentDecisions",
        Detail::Fixed {
            name: "Outcome",
            value: "allow",
        },
    ),
    count(
        "consent_denied",
        "ConsentDecisions",
        Detail::Fixed {
            name: "Outcome",
            value: "deny",
        },
    ),
    count(
        "consent_skipped",
        "ConsentDecisions",
        Detail::Fixed {
            name: "Outcome",
            value: "skip",
        },
    ),
    count(
        "device_code_accepted",
        "DeviceCodes",
        Detail::Fixed {
            name: "Outcome",
            value: "accepted",
        },
    ),
    count(
        "device_code_refused",
        "DeviceCodes",
        Detail::Fixed {
            name: "Outcome",
            value: "refused",
        },
    ),
    count(
        "device_attempts_exceeded",
        "DeviceCodes",
        Detail::Fixed {
            name: "Outcome",
            value: "throttled",
        },
    ),
    count("cold_start", "ColdStart", Detail::None),
    // Per-client policy (docs/policy.md): every decision by outcome (`accept`, `sign_in_again`,
    // `deny`, `allow`, `unavailable`), and clients whose policy cannot be read.
    count(
        "policy_decision",
        "PolicyDecisions",
        Detail::Field {
            name: "Outcome",
            field: "outcome",
        },
    ),
    count("client_policy_invalid", "ClientPolicyInvalid", Detail::None),
    upstream_failure("kratos_whoami_failed"),
    upstream_failure("sso_check_failed"),
    upstream_failure("replay_store_failed"),
    upstream_failure("replay_complete_failed"),
    upstream_failure("replay_release_failed"),
    upstream_failure("hydra_accept_failed"),
    upstream_failure("hydra_login_request_failed"),
    upstream_failure("hydra_consent_failed"),
    upstream_failure("logout_failed"),
    upstream_failure("kratos_error_lookup_failed"),
    upstream_failure("hydra_device_failed"),
    upstream_failure("policy_hook_failed"),
];

/// The fields of an event the metrics read; everything else is ignored.
#[derive(Debug, Default)]
struct MetricFields {
    event: Option<String>,
    flow: Option<String>,
    method: Option<String>,
    upstream: Option<String>,
    failure: Option<String>,
    outcome: Option<String>,
}

impl MetricFields {
    fn get(&self, field: &str) -> Option<&str> {
        match field {
            "method" => self.method.as_deref(),
            "upstream" => self.upstream.as_deref(),
            "outcome" => self.outcome.as_deref(),
            _ => None,
        }
    }
}

impl Visit for MetricFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "event" => &mut self.event,
            "flow" => &mut self.flow,
            "method" => &mut self.method,
            "upstream" => &mut self.upstream,
            "failure" => &mut self.failure,
            "outcome" => &mut self.outcome,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(
            field.name(),
            "event" | "flow" | "method" | "upstream" | "failure" | "outcome"
        ) {
            let text = format!("{value:?}");
            self.record_str(field, text.trim_matches('"'));
        }
    }
}

/// A dimension value as CloudWatch will show it: the fixed vocabularies pass unchanged, anything
/// else (which no handler writes) is folded into `other` so a bug cannot explode the number of
/// metrics or carry data into one.
fn dimension_value(raw: Option<&str>) -> &str {
    match raw {
        None | Some("") => "none",
        Some(v)
            if v.len() <= 64
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.')
                }) =>
        {
            v
        }
        Some(_) => "other",
    }
}

/// Builds the EMF line for one event, or nothing when the event is not a metric.
pub fn emf_line(
    settings: &MetricsSettings,
    fields_event: Option<&str>,
    lookup_field: impl Fn(&str) -> Option<String>,
    ids: Option<&InvocationIds>,
    timestamp_ms: u64,
) -> Option<String> {
    let event = fields_event?;
    let rule = RULES.iter().find(|rule| rule.event == event)?;
    if !rule.only_failures.is_empty() {
        let failure = lookup_field("failure")?;
        if !rule.only_failures.contains(&failure.as_str()) {
            return None;
        }
    }
    let detail = match rule.detail {
        Detail::None => None,
        Detail::Field { name, field } => Some((
            name,
            dimension_value(lookup_field(field).as_deref()).to_owned(),
        )),
        Detail::Fixed { name, value } => Some((name, value.to_owned())),
    };
    let mut dimension_sets = vec![serde_json::json!([]), serde_json::json!(["FunctionName"])];
    if let Some((name, _)) = &detail {
        dimension_sets.push(serde_json::json!(["FunctionName", name]));
    }
    let metadata = serde_json::json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{
            "Namespace": settings.namespace,
            "Dimensions": dimension_sets,
            "Metrics": [{"Name": rule.metric, "Unit": "Count"}],
        }],
    });
    let mut line = JsonObject::default();
    line.raw("_aws", &metadata.to_string());
    line.string("FunctionName", &settings.function_name);
    if let Some((name, value)) = &detail {
        line.string(name, value);
    }
    line.raw(rule.metric, "1");
    line.string("event", event);
    if let Some(ids) = ids {
        line.string("requestId", &ids.request_id);
        if let Some(trace) = &ids.xray_trace_id {
            line.string("xrayTraceId", trace);
        }
    }
    if let Some(flow) = lookup_field("flow") {
        line.string("flow", dimension_value(Some(&flow)));
    }
    Some(line.finish())
}

/// The tracing layer that writes one EMF line per metric event, next to the event's own log line.
/// It has its own level filter (INFO), so metrics keep flowing when the log level is raised.
pub struct MetricsLayer<W> {
    settings: MetricsSettings,
    writer: W,
}

impl<W> MetricsLayer<W> {
    /// A layer writing through `writer` (stdout in the functions).
    pub fn new(settings: MetricsSettings, writer: W) -> Self {
        Self { settings, writer }
    }
}

impl<S, W> Layer<S> for MetricsLayer<W>
where
    S: Subscriber + for<'l> LookupSpan<'l>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = MetricFields::default();
        event.record(&mut fields);
        if fields.event.is_none() {
            return;
        }
        let ids = InvocationIds::of_scope(ctx.event_scope(event));
        let now_ms = since_epoch(SystemTime::now())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let line = emf_line(
            &self.settings,
            fields.event.as_deref(),
            |name| match name {
                "flow" => fields.flow.clone(),
                "failure" => fields.failure.clone(),
                other => fields.get(other).map(str::to_owned),
            },
            ids.as_ref(),
            now_ms,
        );
        if let Some(mut line) = line {
            line.push('\n');
            use std::io::Write as _;
            // One write per line, so lines never interleave; a failed write loses one metric.
            let _ = self.writer.make_writer().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::tests::{in_invocation, settings, Capture};
    use serde_json::Value;

    /// Checks a line against the EMF specification: `_aws.Timestamp` a number,
    /// `CloudWatchMetrics` a non-empty array of directives with a namespace, dimension sets whose
    /// keys are string members of the root, and metrics whose names are numeric root members.
    fn assert_valid_emf(line: &Value) {
        let aws = line["_aws"].as_object().expect("_aws object");
        assert!(aws["Timestamp"].as_u64().is_some(), "Timestamp: {line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("namespace");
            assert!(!namespace.is_empty() && namespace.len() <= 255);
            let sets = directive["Dimensions"].as_array().expect("dimension sets");
            for set in sets {
                let keys = set.as_array().expect("dimension set");
                assert!(keys.len() <= 30);
                for key in keys {
                    let key = key.as_str().expect("dimension key");
                    let value = line[key]
                        .as_str()
                        .unwrap_or_else(|| panic!("{key} not a string member: {line}"));
                    assert!(!value.is_empty() && value.len() <= 1024);
                }
            }
            let metrics = directive["Metrics"].as_array().expect("metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for metric in metrics {
                let name = metric["Name"].as_str().expect("metric name");
                assert!(line[name].is_number(), "{name} not a number: {line}");
                assert_eq!(metric["Unit"], "Count");
            }
        }
    }

    fn run(events: impl FnOnce()) -> Vec<Value> {
        let capture = Capture::default();
        let subscriber = crate::logging::subscriber(
            &settings(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "auth-login-return"),
                ("BRIDGE_METRICS_NAMESPACE", "HydraKratosBridge/auth"),
            ]),
            capture.clone(),
        );
        tracing::subscriber::with_default(subscriber, events);
        capture
            .json_lines()
            .into_iter()
            .filter(|l| l.get("_aws").is_some())
            .collect()
    }

    #[test]
    fn login_accepted_by_method_is_a_valid_emf_record() {
        let lines = run(|| {
            in_invocation(
                "req-1",
                Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
                || {
                    tracing::info!(
                        flow = "0123456789abcdef",
                        event = "login_accepted",
                        client_id = "app",
                        method = "sms+otp",
                        "login accepted after Kratos"
                    );
                },
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_valid_emf(line);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "HydraKratosBridge/auth");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([[], ["FunctionName"], ["FunctionName", "Method"]])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "LoginAccepted");
        assert_eq!(line["LoginAccepted"], 1);
        assert_eq!(line["Method"], "sms+otp");
        assert_eq!(line["FunctionName"], "auth-login-return");
        assert_eq!(line["requestId"], "req-1");
        assert_eq!(line["flow"], "0123456789abcdef");
        assert!(
            line.get("client_id").is_none(),
            "only whitelisted fields: {line}"
        );
        assert!(line.get("message").is_none());
    }

    #[test]
    fn every_rule_produces_a_valid_record() {
        for rule in RULES {
            let lines = run(|| {
                in_invocation("req", None, || {
                    tracing::warn!(
                        event = rule.event,
                        upstream = "kratos",
                        failure = "unavailable",
                        method = "fed",
                        "x"
                    );
                });
            });
            assert_eq!(lines.len(), 1, "{}", rule.event);
            assert_valid_emf(&lines[0]);
            assert_eq!(lines[0][rule.metric], 1, "{}", rule.event);
        }
    }

    #[test]
    fn upstream_failures_count_outages_by_upstream_not_stale_links() {
        let lines = run(|| {
            in_invocation("req", None, || {
                tracing::warn!(
                    flow = "f",
                    event = "hydra_accept_failed",
                    upstream = "hydra",
                    failure = "unavailable",
                    error = "Hydra is unavailable (timeout)",
                    "login not accepted"
                );
                tracing::warn!(
                    flow = "f",
                    event = "replay_store_failed",
                    upstream = "dynamodb",
                    failure = "malformed",
                    "x"
                );
                tracing::warn!(
                    flow = "f",
                    event = "hydra_login_request_failed",
                    upstream = "hydra",
                    failure = "expired",
                    "x"
                );
                tracing::warn!(
                    flow = "f",
                    event = "logout_failed",
                    upstream = "kratos",
                    failure = "unknown_request",
                    "x"
                );
            });
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["Upstream"], "hydra");
        assert_eq!(lines[1]["Upstream"], "dynamodb");
        assert!(lines[0].get("error").is_none());
        for line in &lines {
            assert_valid_emf(line);
            assert_eq!(line["UpstreamFailures"], 1);
        }
    }

    #[test]
    fn consent_outcomes_and_security_events() {
        let lines = run(|| {
            in_invocation("req", None, || {
                tracing::info!(event = "consent_accepted", "x");
                tracing::info!(event = "consent_denied", "x");
                tracing::warn!(event = "replay_rejected", "x");
                tracing::warn!(event = "binding_mismatch", "x");
                tracing::info!(event = "consent_screen", "not a metric");
                tracing::info!("no event at all");
            });
        });
        let names: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    l["Outcome"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("ConsentDecisions".to_owned(), "allow".to_owned()),
                ("ConsentDecisions".to_owned(), "deny".to_owned()),
                ("ReplayRejected".to_owned(), String::new()),
                ("BindingMismatch".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn policy_decisions_count_by_outcome_and_a_dead_hook_is_an_upstream_failure() {
        let lines = run(|| {
            in_invocation("req", None, || {
                crate::policy::log_decision(
                    "app",
                    "login",
                    crate::policy::Rule::RequiredAal,
                    "sign_in_again",
                );
                tracing::warn!(
                    event = "policy_hook_failed",
                    upstream = "policy_hook",
                    failure = "unavailable",
                    "x"
                );
                tracing::error!(event = "client_policy_invalid", client_id = "app", "x");
            });
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["PolicyDecisions"], 1);
        assert_eq!(lines[0]["Outcome"], "sign_in_again");
        assert!(
            lines[0].get("client_id").is_none(),
            "no client id in metrics"
        );
        assert_eq!(lines[1]["UpstreamFailures"], 1);
        assert_eq!(lines[1]["Upstream"], "policy_hook");
        assert_eq!(lines[2]["ClientPolicyInvalid"], 1);
        for line in &lines {
            assert_valid_emf(line);
        }
    }

    #[test]
    fn odd_dimension_values_are_folded() {
        assert_eq!(dimension_value(Some("fed")), "fed");
        assert_eq!(dimension_value(Some("sms+otp+mfa")), "sms+otp+mfa");
        assert_eq!(dimension_value(Some("")), "none");
        assert_eq!(dimension_value(None), "none");
        assert_eq!(dimension_value(Some("a b")), "other");
        assert_eq!(dimension_value(Some(&"x".repeat(65))), "other");
        let defaults = MetricsSettings::from_lookup(&|_| None);
        assert_eq!(defaults.namespace, DEFAULT_NAMESPACE);
        assert_eq!(defaults.function_name, "unknown");
    }
}
