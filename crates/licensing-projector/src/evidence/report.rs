//! The evidence pack's printable `report.html` (English and Chinese headings), rendered with maud
//! like the console: every text taken from the evidence is escaped by the engine.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::ledger::ledger;
use super::{Evidence, MAX_REFUSALS, Window, refusal_summary};
use crate::read_model::time::rfc3339;

const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:2em;color:#111}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%;font-size:.85em}td,th{border:1px solid #ccc;padding:.3em;vertical-align:top;text-align:left}
th{background:#eee}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5em;font-size:.8em}
.exchange{page-break-inside:avoid;border:1px solid #ccc;padding:.5em;margin:.5em 0}
@media print{body{margin:0}h2{page-break-before:always}}";

/// A payload for reading: pretty JSON when it is JSON, else the text (lossy), else base64.
fn readable(payload: &Value) -> String {
    if payload["json"].is_null() {
        let bytes = payload["base64"]
            .as_str()
            .and_then(|b| STANDARD.decode(b).ok())
            .unwrap_or_default();
        match std::str::from_utf8(&bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => format!(
                "(binary, base64) {}",
                payload["base64"].as_str().unwrap_or("")
            ),
        }
    } else {
        pretty(&payload["json"])
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn text<'a>(value: &'a Value, or: &'a str) -> &'a str {
    value.as_str().unwrap_or(or)
}

/// The whole report: the license and window, its timeline, the three-way ledger, the refusals
/// apart, and every exchange with its signature check (`files`: each exchange's path in the pack
/// and its JSON).
pub(crate) fn report(
    code: &str,
    window: &Window,
    evidence: &Evidence,
    files: &[(String, Value)],
    refusal_paths: &[String],
    created: &str,
) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Evidence pack " (code) " / 证据包" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Evidence pack / 证据包: " (code) }
                p {
                    "License code (授权码) " b { (code) }
                    @if window.sandbox { " (sandbox / 测试)" }
                    "; window from " (rfc3339(window.from).as_str().unwrap_or("the beginning"))
                    " to " (rfc3339(window.to).as_str().unwrap_or("now"))
                    "; created " (created) ". Every file of this pack is listed with its SHA-256 in "
                    code { "manifest.json" } "."
                }
                (timeline(evidence))
                (ledger_table(evidence))
                (refusals(evidence, refusal_paths))
                h2 { "Exchanges / 交互记录" }
                @for (path, exchange) in files {
                    (exchange_block(path, exchange))
                }
            }
        }
    };
    markup.into_string()
}

fn timeline(evidence: &Evidence) -> Markup {
    html! {
        h2 { "License timeline / 授权码时间线" }
        table {
            tr { th { "Recorded / 记录时间" } th { "Event / 事件" } th { "Version / 版本" } th { "Payload / 内容" } }
            @for event in &evidence.events {
                tr {
                    td { (rfc3339(Some(event.recorded_at)).as_str().unwrap_or("")) }
                    td { (event.event_type) }
                    td { (event.stream_version) }
                    td { pre { (pretty(&event.payload)) } }
                }
            }
        }
    }
}

fn ledger_table(evidence: &Evidence) -> Markup {
    html! {
        h2 { "Three-way ledger / 三方账本" }
        table {
            tr {
                th { "Time / 时间" } th { "What the marketplace said / 云商店所述" }
                th { "What we concluded / 我方结论" } th { "What we told it / 我方所告" }
            }
            @for entry in ledger(evidence) {
                @let entry = entry.to_json();
                @let cell = html! {
                    b { (text(&entry["kind"], "")) } br; (text(&entry["summary"], ""))
                    @if let Some(id) = entry["exchange_id"].as_str() { br; small { "exchange " (id) } }
                };
                @let column = match entry["side"].as_str() {
                    Some("marketplace_said") => 0,
                    Some("we_concluded") => 1,
                    _ => 2,
                };
                tr {
                    td { (text(&entry["at"], "")) }
                    @for i in 0..3 {
                        td { @if i == column { (cell) } }
                    }
                }
            }
        }
    }
}

fn refusals(evidence: &Evidence, paths: &[String]) -> Markup {
    html! {
        @if !evidence.refusals.is_empty() {
            h2 { "Refused requests / 被拒请求" }
            p {
                "Requests naming this license that failed verification or validation, kept apart \
                 from the exchanges above (anyone can send them)"
                @if evidence.refusals_truncated() { "; the first " (MAX_REFUSALS) " of the window" }
                ". Each is in " code { "refusals/" } "."
            }
            table {
                tr { th { "Received / 接收时间" } th { "Request / 请求" } th { "File / 文件" } }
                @for (stored, path) in evidence.refusals.iter().zip(paths) {
                    tr {
                        td { (rfc3339(Some(stored.exchange.at)).as_str().unwrap_or("")) }
                        td { (refusal_summary(stored)) }
                        td { code { (path) } }
                    }
                }
            }
        }
    }
}

/// What the signature check recorded in an exchange's JSON says, in both languages.
fn signature_line(check: &Value) -> String {
    match (check["valid"].as_bool(), check["checked"].as_bool()) {
        (Some(true), _) => format!(
            "signature valid with access key #{} / 签名有效",
            check["key_index"].as_u64().unwrap_or(0) + 1
        ),
        (Some(false), _) => format!(
            "signature not valid: {} / 签名无效",
            text(&check["reason"], "")
        ),
        (None, Some(false)) => "signature not checked (no keys configured) / 未校验签名".to_owned(),
        _ => String::new(),
    }
}

/// One exchange: what, when, its outcome and hashes, and both payloads as stored.
fn exchange_block(path: &str, exchange: &Value) -> Markup {
    let direction = if exchange["direction"] == "in" {
        "inbound / 回调"
    } else {
        "outbound / 调用"
    };
    html! {
        div.exchange {
            h3 { (path) " — " (direction) " " (text(&exchange["at"], "")) }
            p {
                "Outcome / 结果: " b { (text(&exchange["outcome"], "")) } ". "
                (text(&exchange["summary"], "")) br;
                (signature_line(&exchange["signature_check"])) br;
                "Request SHA-256 / 请求摘要: " code { (text(&exchange["request_sha256"], "")) }
                " (" (exchange["request"]["size"]) " bytes"
                @if exchange["request"]["truncated"] == true { ", stored truncated / 已截断" }
                ")" br;
                "Answer SHA-256 / 应答摘要: " code { (text(&exchange["response_sha256"], "none")) }
            }
            h4 { "Request / 请求" }
            pre { (pretty(&exchange["request"]["meta"])) }
            pre { (readable(&exchange["request"])) }
            h4 { "Answer / 应答" }
            pre { (pretty(&exchange["response"]["meta"])) }
            pre { (readable(&exchange["response"])) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_from_an_exchange_is_escaped() {
        let hostile = "<script>alert(\"x\")</script>&";
        let exchange = json!({
            "direction": "in",
            "at": hostile,
            "outcome": hostile,
            "summary": hostile,
            "request_sha256": "ab",
            "request": {"size": 3, "meta": {"query": hostile}, "json": null,
                        "base64": STANDARD.encode(hostile)},
            "response": {"meta": {}, "json": {"resultCode": hostile}},
            "signature_check": {"checked": true, "valid": false, "reason": hostile},
        });
        let html = exchange_block(hostile, &exchange).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"),
            "{html}"
        );
        assert_eq!(html.matches("<pre>").count(), 4, "{html}");
    }

    #[test]
    fn the_signature_line_says_what_was_checked() {
        assert_eq!(
            signature_line(&json!({"checked": true, "valid": true, "key_index": 1})),
            "signature valid with access key #2 / 签名有效"
        );
        assert_eq!(
            signature_line(&json!({"checked": false})),
            "signature not checked (no keys configured) / 未校验签名"
        );
    }
}
