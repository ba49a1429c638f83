//! Traces (ADR 0017): spans with W3C trace context, exported over OTLP/HTTP (JSON encoding) when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Off by default;
//! when off, [`Span::start`] is one check of an unset cell and a span is an empty box.
//!
//! A span's context travels as a `traceparent` value: in AMQP headers between services, in the
//! events' metadata, in the outbound jobs. Ended spans go through a bounded queue to one exporter
//! task that posts them in batches; a full queue or a collector that does not answer drops spans
//! (counted in the log), never slows the work that made them.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The header (AMQP and HTTP) and metadata name of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: `00-{trace id}-{span id}-{flags}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The span that is the parent of whatever continues this context.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

fn hex_into(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceContext {
    /// Parses a `traceparent` value (version 00; a later version's first four fields); `None` for
    /// anything malformed or an all-zero id, as the W3C recommendation says.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let mut context = Self {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        hex_into(trace, &mut context.trace_id)?;
        hex_into(span, &mut context.span_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        context.flags = f[0];
        (context.trace_id != [0; 16] && context.span_id != [0; 8]).then_some(context)
    }

    /// The `traceparent` value.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }
}

/// What a span stands for (OTLP's `SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside a service.
    Internal = 1,
    /// An HTTP request answered.
    Server = 2,
    /// An HTTP call made.
    Client = 3,
    /// A message published.
    Producer = 4,
    /// A message consumed.
    Consumer = 5,
}

/// An ended span on its way to the collector.
#[derive(Debug)]
struct Ended {
    context: TraceContext,
    parent: Option<[u8; 8]>,
    name: String,
    kind: SpanKind,
    start_ns: u128,
    end_ns: u128,
    attributes: Vec<(&'static str, String)>,
    error: Option<String>,
}

static EXPORTER: OnceLock<mpsc::Sender<Ended>> = OnceLock::new();

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    loop {
        let random = uuid::Uuid::new_v4().into_bytes();
        out.copy_from_slice(&random[..N]);
        if out.iter().any(|&b| b != 0) {
            return out;
        }
    }
}

/// A span: exported when dropped. Empty (and free) when traces are off.
#[derive(Debug, Default)]
pub struct Span(Option<Box<Ended>>);

impl Span {
    /// Starts a span named `name`, the child of `parent` (a `traceparent` value) when it is a
    /// valid one, else the root of a new trace. Nothing at all when traces are off.
    pub fn start(name: &str, kind: SpanKind, parent: Option<&str>) -> Self {
        if EXPORTER.get().is_none() {
            return Self(None);
        }
        let parent = parent.and_then(TraceContext::parse);
        let context = TraceContext {
            trace_id: parent.map_or_else(random_bytes, |p| p.trace_id),
            span_id: random_bytes(),
            flags: parent.map_or(1, |p| p.flags),
        };
        Self(Some(Box::new(Ended {
            context,
            parent: parent.map(|p| p.span_id),
            name: name.to_owned(),
            kind,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: Vec::new(),
            error: None,
        })))
    }

    /// The `traceparent` value that makes what follows a child of this span (`None` when off).
    pub fn traceparent(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.context.header())
    }

    /// Adds an attribute (ignored when off).
    pub fn set(&mut self, key: &'static str, value: impl std::fmt::Display) {
        if let Some(span) = &mut self.0 {
            span.attributes.push((key, value.to_string()));
        }
    }

    /// Marks the span failed, with a message (ignored when off).
    pub fn fail(&mut self, message: impl std::fmt::Display) {
        if let Some(span) = &mut self.0 {
            span.error = Some(message.to_string());
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let (Some(mut span), Some(exporter)) = (self.0.take(), EXPORTER.get()) {
            span.end_ns = now_ns();
            if exporter.try_send(*span).is_err() {
                tracing::debug!("trace queue full, a span was dropped");
            }
        }
    }
}

/// Where and how to export: the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The full URL spans are posted to.
    pub url: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `key=value,…`), e.g. a token.
    pub headers: Vec<(String, String)>,
    /// `service.name` (`OTEL_SERVICE_NAME`, else the binary's name).
    pub service: String,
}

impl TraceExport {
    /// Reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (a base: `/v1/traces` is appended), `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_SERVICE_NAME`
    /// through `get`. `Ok(None)` when no endpoint is set: traces are off. An error names the
    /// variable.
    pub fn from_lookup(
        service: &str,
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Option<Self>, (&'static str, String)> {
        let (name, url) = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|v| !v.trim().is_empty()),
            get("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.trim().is_empty()),
        ) {
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.trim().to_owned()),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                name,
                format!("{url:?}: expected an http:// or https:// URL"),
            ));
        }
        let mut headers = Vec::new();
        for pair in get("OTEL_EXPORTER_OTLP_HEADERS")
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (key, value) = pair.split_once('=').ok_or((
                "OTEL_EXPORTER_OTLP_HEADERS",
                "expected key=value pairs separated by commas".to_owned(),
            ))?;
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Some(Self {
            url,
            headers,
            service: get("OTEL_SERVICE_NAME")
                .filter(|s| !s.trim().is_empty())
                .unwrap_or_else(|| service.to_owned()),
        }))
    }
}

/// Turns traces on for this process: spans from now on are exported by a task spawned here (call
/// it inside the runtime, once). A second call changes nothing.
pub fn start_traces(export: TraceExport) {
    let (sender, receiver) = mpsc::channel(4096);
    if EXPORTER.set(sender).is_ok() {
        tracing::info!(url = %export.url, service = %export.service, "exporting traces");
        tokio::spawn(run_exporter(export, receiver));
    }
}

/// Posts ended spans in batches: whatever arrived within 200 ms of the first, up to 512.
async fn run_exporter(export: TraceExport, mut spans: mpsc::Receiver<Ended>) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the trace exporter's HTTP client; traces are not exported");
            return;
        }
    };
    let mut failures = 0u64;
    while let Some(first) = spans.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        while batch.len() < 512 {
            tokio::select! {
                next = spans.recv() => match next {
                    Some(span) => batch.push(span),
                    None => break,
                },
                () = tokio::time::sleep_until(until) => break,
            }
        }
        let mut request = http
            .post(&export.url)
            .header("Content-Type", "application/json")
            .body(otlp_json(&export.service, &batch).to_string());
        for (key, value) in &export.headers {
            request = request.header(key, value);
        }
        let outcome = match request.send().await {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("the collector answered {}", answer.status())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = outcome {
            failures += 1;
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(%error, spans = batch.len(), failures, "spans not exported");
            }
        }
    }
}

/// A batch as an OTLP `ExportTraceServiceRequest` in its JSON encoding (ids in hex).
fn otlp_json(service: &str, batch: &[Ended]) -> Value {
    let attribute = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    let spans: Vec<Value> = batch
        .iter()
        .map(|s| {
            let mut span = json!({
                "traceId": hex(&s.context.trace_id),
                "spanId": hex(&s.context.span_id),
                "name": s.name,
                "kind": s.kind as u8,
                "flags": s.context.flags,
                "startTimeUnixNano": s.start_ns.to_string(),
                "endTimeUnixNano": s.end_ns.to_string(),
                "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
                "status": match &s.error {
                    Some(message) => json!({"code": 2, "message": message}),
                    None => json!({}),
                },
            });
            if let Some(parent) = s.parent {
                span["parentSpanId"] = json!(hex(&parent));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", service)]},
        "scopeSpans": [{"scope": {"name": "licensing"}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_the_recommendation_refuses() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).unwrap();
        assert_eq!(context.header(), header);
        assert_eq!(context.flags, 1);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
            "",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version: its first four fields are read.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
    }

    #[test]
    fn spans_cost_nothing_and_carry_nothing_when_traces_are_off() {
        let mut span = Span::start("work", SpanKind::Internal, None);
        span.set("license", "L1");
        assert!(span.traceparent().is_none());
    }

    #[test]
    fn the_endpoint_settings_follow_the_opentelemetry_names() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &'static str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(TraceExport::from_lookup("svc", lookup(&[])).unwrap(), None);
        let export = TraceExport::from_lookup(
            "svc",
            lookup(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "authorization=Bearer x, tenant=t1",
                ),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(export.url, "http://collector:4318/v1/traces");
        assert_eq!(export.service, "svc");
        assert_eq!(export.headers.len(), 2);
        let export = TraceExport::from_lookup(
            "svc",
            lookup(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://c/otlp/traces",
                ),
                ("OTEL_SERVICE_NAME", "ingress-eu"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (export.url.as_str(), export.service.as_str()),
            ("https://c/otlp/traces", "ingress-eu")
        );
        let (name, _) = TraceExport::from_lookup(
            "svc",
            lookup(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
        )
        .unwrap_err();
        assert_eq!(name, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn a_batch_is_encoded_as_otlp_json_with_hex_ids_and_parent_links() {
        let parent =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let span = Ended {
            context: TraceContext {
                span_id: [1; 8],
                ..parent
            },
            parent: Some(parent.span_id),
            name: "apply".to_owned(),
            kind: SpanKind::Consumer,
            start_ns: 1,
            end_ns: 2,
            attributes: vec![("license", "L1".to_owned())],
            error: Some("refused".to_owned()),
        };
        let body = otlp_json("licensing-processor", &[span]);
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "licensing-processor"
        );
        let span = &resource["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "0101010101010101");
        assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(span["kind"], 5);
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["startTimeUnixNano"], "1");
    }
}
