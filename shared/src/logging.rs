//! Structured JSON logs with a per-flow correlation id, Lambda's request id and Lambda's advanced
//! logging controls.
//!
//! Logs must let an operator follow one sign-in across the functions without ever containing a
//! challenge, token, cookie or code. The correlation id is therefore a short hash of the login
//! challenge: every function that sees the challenge (or the token carrying it) derives the same
//! id, and the id reveals nothing about the challenge.
//!
//! Within one function, every line of an invocation also carries Lambda's `requestId` (and the
//! X-Ray `xrayTraceId` when Lambda traces the invocation), so a line can be matched with the
//! invocation's `REPORT` line, its X-Ray trace and the API Gateway access log. They come from the
//! `Lambda runtime invoke` span that `lambda_runtime` opens around every invocation
//! ([`lambda_http::lambda_runtime::layers::trace::request_span`]); this module only copies that
//! span's fields onto each line.
//!
//! Why not `lambda_runtime::tracing::init_default_subscriber`: it reads the same two variables,
//! but its JSON nests event fields under `fields` and the request id under `span` (and loses the
//! span when the level is above INFO), reads `FATAL` as INFO, and has no place for the layer that
//! turns events into metrics ([`crate::metrics`]). This is the same registry and fmt layer with a
//! flat JSON formatter and that layer beside it.

use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt as _};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer;

use crate::digest::sha256_hex;

/// Name of the span `lambda_runtime` opens around each invocation (fields `requestId` and, when
/// traced, `xrayTraceId`).
pub(crate) const INVOCATION_SPAN: &str = "Lambda runtime invoke";

/// How the functions log, read once at cold start from the environment Lambda sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `AWS_LAMBDA_LOG_FORMAT`: JSON lines (the default, also locally) or tracing's text format.
    pub format: LogFormat,
    /// The filter directives: `RUST_LOG` when set and not empty, otherwise the level of
    /// `AWS_LAMBDA_LOG_LEVEL` (default `info`).
    pub directives: String,
    /// Namespace and `FunctionName` dimension of the metrics ([`crate::metrics`]).
    pub metrics: crate::metrics::MetricsSettings,
}

/// The two log formats of Lambda's advanced logging controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, what CloudWatch Logs Insights and Lambda's level filter read.
    Json,
    /// Human-readable lines (`LoggingConfig.LogFormat: Text`).
    Text,
}

impl LogSettings {
    /// Reads the settings through `lookup` (the process environment in [`init`], a map in
    /// tests). Nothing here can fail: an unknown value falls back to the default and the function
    /// still starts, since a log setting must never take the login down.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let format = match non_empty("AWS_LAMBDA_LOG_FORMAT") {
            Some(v) if v.trim().eq_ignore_ascii_case("text") => LogFormat::Text,
            _ => LogFormat::Json,
        };
        let directives = non_empty("RUST_LOG").unwrap_or_else(|| {
            lambda_log_level(non_empty("AWS_LAMBDA_LOG_LEVEL").as_deref())
                .to_string()
                .to_ascii_lowercase()
        });
        Self {
            format,
            directives,
            metrics: crate::metrics::MetricsSettings::from_lookup(&lookup),
        }
    }
}

/// Maps Lambda's application log levels (TRACE, DEBUG, INFO, WARN, ERROR, FATAL) to tracing's;
/// FATAL has no tracing counterpart and becomes ERROR, anything unknown INFO (Lambda's default).
pub fn lambda_log_level(value: Option<&str>) -> LevelFilter {
    match value.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        Some("TRACE") => LevelFilter::TRACE,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some("WARN" | "WARNING") => LevelFilter::WARN,
        Some("ERROR" | "FATAL") => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

static STARTED: OnceLock<Instant> = OnceLock::new();

/// Installs the log subscriber once per cold start from the environment (see [`LogSettings`]),
/// with the metrics layer beside it. Safe to call twice (tests); the second call does nothing.
pub fn init() {
    STARTED.get_or_init(Instant::now);
    let settings = LogSettings::from_lookup(|name| std::env::var(name).ok());
    let _ = subscriber(&settings, std::io::stdout).try_init();
}

/// The whole subscriber: the invocation ids, the log lines filtered by the settings and the
/// metrics, all written through `writer`. Public so tests can capture exactly what Lambda would
/// receive.
pub fn subscriber<W>(settings: &LogSettings, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Clone + Send + Sync + 'static,
{
    let env_filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(&settings.directives);
    // The invocation span must stay visible to the log layer whatever the level, or a WARN level
    // would strip the request id from the very lines that matter.
    let log_filter = invocation_span_filter().or(env_filter);
    let logs = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(LambdaJson)
            .with_writer(writer.clone())
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .without_time()
            .with_writer(writer.clone())
            .with_filter(log_filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(InvocationIdsLayer.with_filter(invocation_span_filter()))
        .with(logs)
        .with(
            crate::metrics::MetricsLayer::new(settings.metrics.clone(), writer)
                .with_filter(LevelFilter::INFO),
        )
}

/// Lets only the invocation span through (never an event).
fn invocation_span_filter() -> tracing_subscriber::filter::FilterFn<impl Fn(&Metadata<'_>) -> bool>
{
    filter_fn(|meta: &Metadata<'_>| meta.is_span() && meta.name() == INVOCATION_SPAN)
        .with_max_level_hint(Level::INFO)
}

/// Lambda's ids of the invocation in progress, kept in the invocation span's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationIds {
    /// Lambda's `requestId` (the `lambda-runtime-aws-request-id` of the invocation).
    pub request_id: String,
    /// The X-Ray trace header of the invocation (`Root=…;Parent=…;Sampled=…`), when traced.
    pub xray_trace_id: Option<String>,
}

impl InvocationIds {
    /// The ids of the invocation an event belongs to, if it happens inside one.
    pub(crate) fn of_scope<'a, S>(
        scope: Option<tracing_subscriber::registry::Scope<'a, S>>,
    ) -> Option<Self>
    where
        S: for<'l> LookupSpan<'l>,
    {
        scope?.find_map(|span| span.extensions().get::<InvocationIds>().cloned())
    }
}

impl Visit for InvocationIds {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "requestId" => self.request_id = value.to_owned(),
            "xrayTraceId" => self.xray_trace_id = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, text.trim_matches('"'));
    }
}

/// Copies `requestId` / `xrayTraceId` of each invocation span into its extensions, where the log
/// and metrics layers find them.
struct InvocationIdsLayer;

impl<S> Layer<S> for InvocationIdsLayer
where
    S: Subscriber + for<'l> LookupSpan<'l>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != INVOCATION_SPAN {
            return;
        }
        let mut ids = InvocationIds::default();
        attrs.record(&mut ids);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(ids);
        }
    }
}

/// One JSON object per line: `timestamp` (RFC 3339, which Lambda's JSON log format reads),
/// `level` (which Lambda's application log level filters on), `requestId` and `xrayTraceId` of
/// the invocation, then the event's own fields flattened (`message`, `event`, `flow`, …).
struct LambdaJson;

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = JsonObject::default();
        let mut timestamp = String::new();
        use tracing_subscriber::fmt::time::FormatTime as _;
        if tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut timestamp))
            .is_ok()
        {
            line.string("timestamp", &timestamp);
        }
        line.string("level", event.metadata().level().as_str());
        if let Some(ids) = InvocationIds::of_scope(ctx.event_scope()) {
            line.string("requestId", &ids.request_id);
            if let Some(trace) = &ids.xray_trace_id {
                line.string("xrayTraceId", trace);
            }
        }
        event.record(&mut line);
        writeln!(writer, "{}", line.finish())
    }
}

/// A JSON object written field by field (in the order the fields come), escaping through serde.
#[derive(Default)]
pub(crate) struct JsonObject {
    text: String,
}

impl JsonObject {
    /// Appends `"key": value` with `value` already JSON.
    pub(crate) fn raw(&mut self, key: &str, json_value: &str) {
        self.text.push(if self.text.is_empty() { '{' } else { ',' });
        self.text.push_str(&json_string(key));
        self.text.push(':');
        self.text.push_str(json_value);
    }

    /// Appends a string member.
    pub(crate) fn string(&mut self, key: &str, value: &str) {
        self.raw(key, &json_string(value));
    }

    /// The finished object.
    pub(crate) fn finish(mut self) -> String {
        if self.text.is_empty() {
            self.text.push('{');
        }
        self.text.push('}');
        self.text
    }
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.string(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field.name(), if value { "true" } else { "false" });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field.name(), &value.to_string());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field.name(), &value.to_string());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        match serde_json::Number::from_f64(value) {
            Some(number) => self.raw(field.name(), &number.to_string()),
            None => self.string(field.name(), &value.to_string()),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.string(field.name(), &text);
    }
}

/// Milliseconds since [`init`] ran (the start of the cold start as far as the code can see).
pub(crate) fn millis_since_start() -> u64 {
    STARTED
        .get()
        .map(|start| u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A correlation id for the flow a challenge belongs to: the first 16 hex digits of its SHA-256.
pub fn flow_id(challenge: &str) -> String {
    let mut hash = sha256_hex(challenge);
    hash.truncate(16);
    hash
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Captures what the subscriber writes, line by line.
    #[derive(Clone, Default)]
    pub(crate) struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        pub(crate) fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock().expect("capture").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(str::to_owned)
                .collect()
        }

        pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
            self.lines()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    pub(crate) fn settings(vars: &[(&str, &str)]) -> LogSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LogSettings::from_lookup(|name| map.get(name).cloned())
    }

    /// Runs `body` inside the span lambda_runtime itself opens for an invocation.
    pub(crate) fn in_invocation(request_id: &str, xray: Option<&str>, body: impl FnOnce()) {
        let mut context = lambda_http::Context::default();
        context.request_id = request_id.to_owned();
        context.xray_trace_id = xray.map(str::to_owned);
        let span = lambda_http::lambda_runtime::layers::trace::request_span(&context);
        let _entered = span.enter();
        body();
    }

    #[test]
    fn flow_id_is_short_and_stable() {
        let id = super::flow_id("some-challenge");
        assert_eq!(id.len(), 16);
        assert_eq!(id, super::flow_id("some-challenge"));
        assert!(!id.contains("challenge"));
    }

    #[test]
    fn lambda_levels_map_to_tracing_levels_and_rust_log_wins() {
        assert_eq!(lambda_log_level(Some("TRACE")), LevelFilter::TRACE);
        assert_eq!(lambda_log_level(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(lambda_log_level(Some("INFO")), LevelFilter::INFO);
        assert_eq!(lambda_log_level(Some("WARN")), LevelFilter::WARN);
        assert_eq!(lambda_log_level(Some("ERROR")), LevelFilter::ERROR);
        assert_eq!(lambda_log_level(Some("FATAL")), LevelFilter::ERROR);
        assert_eq!(lambda_log_level(Some("nonsense")), LevelFilter::INFO);
        assert_eq!(lambda_log_level(None), LevelFilter::INFO);

        assert_eq!(settings(&[]).directives, "info");
        assert_eq!(settings(&[]).format, LogFormat::Json);
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]).directives,
            "warn"
        );
        let both = settings(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "debug")]);
        assert_eq!(both.directives, "debug");
        let empty_rust_log = settings(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR"), ("RUST_LOG", "")]);
        assert_eq!(empty_rust_log.directives, "error");
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]).format,
            LogFormat::Text
        );
        assert_eq!(
            settings(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).format,
            LogFormat::Json
        );
    }

    #[test]
    fn every_line_of_an_invocation_carries_the_request_and_trace_ids() {
        let capture = Capture::default();
        let subscriber = subscriber(&settings(&[("RUST_LOG", "info")]), capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(event = "before", "outside any invocation");
            in_invocation(
                "req-1",
                Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
                || {
                    tracing::info!(
                        flow = "0123456789abcdef",
                        event = "login_sso",
                        client_id = "app",
                        "straight on"
                    );
                    tracing::debug!(event = "hidden", "below the level");
                },
            );
            in_invocation("req-2", None, || {
                tracing::warn!(
                    event = "token_refused",
                    attempts = 2u64,
                    fresh = false,
                    "refused"
                );
            });
        });
        let lines: Vec<_> = capture
            .json_lines()
            .into_iter()
            .filter(|l| l.get("_aws").is_none())
            .collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].get("requestId").is_none());
        assert_eq!(lines[1]["requestId"], "req-1");
        assert_eq!(
            lines[1]["xrayTraceId"],
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        );
        assert_eq!(lines[1]["level"], "INFO");
        assert_eq!(lines[1]["event"], "login_sso");
        assert_eq!(lines[1]["flow"], "0123456789abcdef");
        assert_eq!(lines[1]["message"], "straight on");
        assert!(lines[1]["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert_eq!(lines[2]["requestId"], "req-2");
        assert!(lines[2].get("xrayTraceId").is_none());
        assert_eq!(lines[2]["level"], "WARN");
        assert_eq!(lines[2]["attempts"], 2);
        assert_eq!(lines[2]["fresh"], false);
    }

    #[test]
    fn a_high_lambda_level_keeps_the_request_id_and_the_metrics() {
        let capture = Capture::default();
        let subscriber = subscriber(
            &settings(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]),
            capture.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            in_invocation("req-9", None, || {
                tracing::info!(event = "consent_denied", flow = "f", "user denied consent");
                tracing::warn!(
                    event = "replay_rejected",
                    flow = "f",
                    "token used by another session"
                );
            });
        });
        let lines = capture.json_lines();
        let logs: Vec<_> = lines.iter().filter(|l| l.get("_aws").is_none()).collect();
        assert_eq!(logs.len(), 1, "INFO is below WARN: {lines:?}");
        assert_eq!(logs[0]["event"], "replay_rejected");
        assert_eq!(logs[0]["requestId"], "req-9");
        let metrics: Vec<_> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
        assert_eq!(metrics.len(), 2, "metrics do not depend on the log level");
    }

    #[test]
    fn text_format_keeps_the_request_id_through_the_span() {
        let capture = Capture::default();
        let subscriber = subscriber(
            &settings(&[("AWS_LAMBDA_LOG_FORMAT", "Text")]),
            capture.clone(),
        );
        tracing::subscriber::with_default(subscriber, || {
            in_invocation("req-t", None, || {
                tracing::info!(event = "login_sso", "straight on");
            });
        });
        let lines = capture.lines();
        let text: Vec<_> = lines.iter().filter(|l| !l.starts_with('{')).collect();
        assert_eq!(text.len(), 1, "{lines:?}");
        assert!(
            text[0].contains("requestId=\"req-t\"") || text[0].contains("requestId=req-t"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("login_sso"));
    }
}
