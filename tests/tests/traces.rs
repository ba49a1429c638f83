//! Traces (ADR 0017): with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the real binaries export spans over
//! OTLP/HTTP to a small collector inside this test, and one activation is one trace from the
//! ingress through the processor and the projector to the marketplace call and back, each span
//! linked to its parent; the subscriber message carries the trace too.

mod support;

use std::sync::{Arc, Mutex};

use licensing_bus::{Bus, BusConfig, QueueType};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A span as received: the service that sent it, and the span's JSON.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

/// An OTLP/HTTP receiver (JSON encoding) on a free port; its base URL and what it received.
async fn collector() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let spans = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let spans = spans.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while request.len() < head + length {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&chunk[..n]);
                }
                let first_line = String::from_utf8_lossy(&request[..head]);
                assert!(
                    first_line.starts_with("POST /v1/traces "),
                    "spans are posted to /v1/traces: {first_line}"
                );
                let body: Value = serde_json::from_slice(&request[head..head + length]).unwrap();
                for resource in body["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            spans.lock().unwrap().push((service.clone(), span.clone()));
                        }
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (url, received)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

/// The first span of `trace` that `service` sent with `name` and whose attributes match.
fn find<'a>(
    spans: &'a [(String, Value)],
    trace: &str,
    service: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Option<&'a Value> {
    spans
        .iter()
        .find(|(s, span)| {
            s == service && span["traceId"] == trace && span["name"] == name && check(span)
        })
        .map(|(_, span)| span)
}

#[tokio::test]
async fn one_activation_is_one_trace_from_the_ingress_to_the_marketplace_and_back() {
    let (endpoint, received) = collector().await;
    let sim = Simulator::start();
    sim.put("TRACE01", "claimed").await;
    let mut stack = Stack::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    stack.start_projector(&sim.url);
    let mut config = BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    config.queue_type = QueueType::Classic;
    let bus = Bus::connect(config).await.unwrap();
    let mut subscriber = bus.subscribe_events("license.#", 10).await.unwrap();

    // The seller's own service calls with a trace of its own: the backend continues it.
    let (trace, caller) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let answer = stack
        .http
        .post(stack.internal_url("/v1/licenses/TRACE01/activation"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    stack.wait_event("license-TRACE01", "activated").await;

    let chain = eventually("the whole trace at the collector", 30, || async {
        let spans = received.lock().unwrap().clone();
        let ingress = find(
            &spans,
            trace,
            "licensing-ingress",
            "internal request",
            |_| true,
        )?;
        let request = find(&spans, trace, "licensing-processor", "apply command", |s| {
            attribute(s, "command.kind") == Some("request_activation")
                && s["parentSpanId"] == ingress["spanId"]
        })?;
        let project = find(
            &spans,
            trace,
            "licensing-projector",
            "project events",
            |s| s["parentSpanId"] == request["spanId"],
        )?;
        let call = find(
            &spans,
            trace,
            "licensing-projector",
            "call marketplace",
            |s| {
                s["parentSpanId"] == project["spanId"]
                    && attribute(s, "koogallery.api") == Some("activate")
            },
        )?;
        let outcome = find(&spans, trace, "licensing-processor", "apply command", |s| {
            attribute(s, "command.kind") == Some("record_activation")
                && s["parentSpanId"] == call["spanId"]
        })?;
        let publish = find(&spans, trace, "licensing-projector", "publish event", |s| {
            s["parentSpanId"] == outcome["spanId"]
        })?;
        Some([ingress, request, project, call, outcome, publish].map(Clone::clone))
    })
    .await;
    let [ingress, request, _, call, _, _] = &chain;
    assert_eq!(
        ingress["parentSpanId"], caller,
        "the caller's span is the parent"
    );
    assert_eq!(ingress["kind"], 2, "server");
    assert_eq!(request["kind"], 5, "consumer");
    assert_eq!(call["kind"], 3, "client");
    assert_eq!(attribute(call, "koogallery.disposition"), Some("success"));
    for span in &chain {
        let (start, end) = (
            span["startTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap(),
            span["endTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap(),
        );
        assert!(start > 0 && end >= start, "{span}");
    }

    // Subscribers get the trace context with each event of the activation.
    let mut traced = Vec::new();
    while traced.len() < 2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(30), subscriber.next())
            .await
            .expect("events reach the subscriber")
            .unwrap()
            .unwrap();
        message.ack().await.unwrap();
        let event: Value = serde_json::from_slice(&message.body).unwrap();
        let header = message.header("traceparent").unwrap_or_default().to_owned();
        assert!(
            header.contains(trace),
            "{} without the trace: {header:?}",
            event["event_type"]
        );
        traced.push(event["event_type"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        traced.contains(&"activation_requested".to_owned()),
        "{traced:?}"
    );
}
