//! The dispute evidence pack (证据包): one `.zip` holding a license's timeline and ledger as a
//! printable `report.html` (English and Chinese headings), every exchange as it was stored
//! (`exchanges/NNNN-in.json`, `…-out.json`), apart from them the requests refused that named the
//! license (`refusals/NNNN-in.json`, ADR 0018), its events (`events.json`) and `manifest.json` listing
//! every other file's SHA-256. Callback signatures are verified again while the pack is built, with
//! the key's index recorded, never the key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use koogallery::signature::{SignatureParams, Verifier};
use licensing_store::{Direction, Store, StoredExchange};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::evidence::ledger::ledger;
use crate::evidence::{
    Evidence, GatherError, MAX_REFUSALS, Window, exchange_json, gather, refusal_summary,
};
use crate::read_model::event_json;
use crate::read_model::time::rfc3339;

/// A callback's signature checked again against the configured keys at its recorded receive time.
fn signature_check(stored: &StoredExchange, verifier: Option<&Verifier>) -> Value {
    let e = &stored.exchange;
    if e.direction != Direction::In {
        return Value::Null;
    }
    let Some(verifier) = verifier else {
        return json!({"checked": false, "reason": "LICENSING_CALLBACK_KEYS is not set"});
    };
    let query = e.request_meta["query"].as_str().unwrap_or("");
    let received_ms = koogallery::market_time::unix_millis(e.at);
    let result = SignatureParams::from_query(query)
        .and_then(|params| verifier.verify(&params, &e.request, received_ms));
    match result {
        Ok(verified) => json!({"checked": true, "valid": true, "key_index": verified.key_index}),
        Err(error) => json!({"checked": true, "valid": false, "reason": error.reason()}),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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
        serde_json::to_string_pretty(&payload["json"]).unwrap_or_default()
    }
}

const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC','PingFang SC',sans-serif;margin:2em;color:#111}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%;font-size:.85em}td,th{border:1px solid #ccc;padding:.3em;vertical-align:top;text-align:left}
th{background:#eee}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.5em;font-size:.8em}
.exchange{page-break-inside:avoid;border:1px solid #ccc;padding:.5em;margin:.5em 0}
@media print{body{margin:0}h2{page-break-before:always}}";

fn report(
    code: &str,
    window: &Window,
    evidence: &Evidence,
    files: &[(String, Value)],
    created: &str,
) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evidence pack {code} / 证据包</title><style>{STYLE}</style></head><body>\n\
         <h1>Evidence pack / 证据包: {code}</h1>\n<p>License code (授权码) <b>{code}</b>{sandbox}; window from {from} to {to}; created {created}. \
         Every file of this pack is listed with its SHA-256 in <code>manifest.json</code>.</p>\n",
        code = escape(code),
        sandbox = if window.sandbox {
            " (sandbox / 测试)"
        } else {
            ""
        },
        from = escape(rfc3339(window.from).as_str().unwrap_or("the beginning")),
        to = escape(rfc3339(window.to).as_str().unwrap_or("now")),
        created = escape(created),
    );
    html.push_str("<h2>License timeline / 授权码时间线</h2>\n<table><tr><th>Recorded / 记录时间</th><th>Event / 事件</th><th>Version / 版本</th><th>Payload / 内容</th></tr>\n");
    for event in &evidence.events {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>\n",
            escape(rfc3339(Some(event.recorded_at)).as_str().unwrap_or("")),
            escape(&event.event_type),
            event.stream_version,
            escape(&serde_json::to_string_pretty(&event.payload).unwrap_or_default()),
        ));
    }
    html.push_str("</table>\n<h2>Three-way ledger / 三方账本</h2>\n<table><tr><th>Time / 时间</th><th>What the marketplace said / 云商店所述</th><th>What we concluded / 我方结论</th><th>What we told it / 我方所告</th></tr>\n");
    for entry in ledger(evidence) {
        let entry = entry.to_json();
        let cell = format!(
            "<b>{}</b><br>{}{}",
            escape(entry["kind"].as_str().unwrap_or("")),
            escape(entry["summary"].as_str().unwrap_or("")),
            entry["exchange_id"]
                .as_str()
                .map(|id| format!("<br><small>exchange {}</small>", escape(id)))
                .unwrap_or_default()
        );
        let (said, concluded, told) = match entry["side"].as_str() {
            Some("marketplace_said") => (cell, String::new(), String::new()),
            Some("we_concluded") => (String::new(), cell, String::new()),
            _ => (String::new(), String::new(), cell),
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{said}</td><td>{concluded}</td><td>{told}</td></tr>\n",
            escape(entry["at"].as_str().unwrap_or(""))
        ));
    }
    html.push_str("</table>\n");
    if !evidence.refusals.is_empty() {
        html.push_str(&format!(
            "<h2>Refused requests / 被拒请求</h2>\n<p>Requests naming this license that failed \
             verification or validation, kept apart from the exchanges above (anyone can send \
             them){}. Each is in <code>refusals/</code>.</p>\n\
             <table><tr><th>Received / 接收时间</th><th>Request / 请求</th><th>File / 文件</th></tr>\n",
            if evidence.refusals_truncated() {
                format!("; the first {MAX_REFUSALS} of the window")
            } else {
                String::new()
            }
        ));
        for (stored, path) in evidence.refusals.iter().zip(refusal_paths(evidence)) {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>\n",
                escape(rfc3339(Some(stored.exchange.at)).as_str().unwrap_or("")),
                escape(&refusal_summary(stored)),
                escape(&path),
            ));
        }
        html.push_str("</table>\n");
    }
    html.push_str("<h2>Exchanges / 交互记录</h2>\n");
    for (path, exchange) in files {
        let check = &exchange["signature_check"];
        let signature = match (check["valid"].as_bool(), check["checked"].as_bool()) {
            (Some(true), _) => format!(
                "signature valid with access key #{} / 签名有效",
                check["key_index"].as_u64().unwrap_or(0) + 1
            ),
            (Some(false), _) => format!(
                "signature not valid: {} / 签名无效",
                check["reason"].as_str().unwrap_or("")
            ),
            (None, Some(false)) => {
                "signature not checked (no keys configured) / 未校验签名".to_owned()
            }
            _ => String::new(),
        };
        html.push_str(&format!(
            "<div class=\"exchange\"><h3>{path} — {direction} {at}</h3>\
             <p>Outcome / 结果: <b>{outcome}</b>. {summary}<br>{signature}<br>\
             Request SHA-256 / 请求摘要: <code>{req_sha}</code> ({size} bytes{truncated})<br>\
             Answer SHA-256 / 应答摘要: <code>{resp_sha}</code></p>\
             <h4>Request / 请求</h4><pre>{meta}</pre><pre>{request}</pre>\
             <h4>Answer / 应答</h4><pre>{response_meta}</pre><pre>{response}</pre></div>\n",
            path = escape(path),
            direction = if exchange["direction"] == "in" {
                "inbound / 回调"
            } else {
                "outbound / 调用"
            },
            at = escape(exchange["at"].as_str().unwrap_or("")),
            outcome = escape(exchange["outcome"].as_str().unwrap_or("")),
            summary = escape(exchange["summary"].as_str().unwrap_or("")),
            req_sha = escape(exchange["request_sha256"].as_str().unwrap_or("")),
            size = exchange["request"]["size"],
            truncated = if exchange["request"]["truncated"] == true {
                ", stored truncated / 已截断"
            } else {
                ""
            },
            resp_sha = escape(exchange["response_sha256"].as_str().unwrap_or("none")),
            meta = escape(
                &serde_json::to_string_pretty(&exchange["request"]["meta"]).unwrap_or_default()
            ),
            request = escape(&readable(&exchange["request"])),
            response_meta = escape(
                &serde_json::to_string_pretty(&exchange["response"]["meta"]).unwrap_or_default()
            ),
            response = escape(&readable(&exchange["response"])),
        ));
    }
    html.push_str("</body></html>\n");
    html
}

/// Builds the pack of `code` over `window` from `evidence`, verifying callback signatures with
/// `verifier` when keys are configured; returns the `.zip` bytes.
pub(crate) fn build(
    code: &str,
    window: &Window,
    evidence: &Evidence,
    verifier: Option<&Verifier>,
    now: OffsetDateTime,
) -> Vec<u8> {
    let created = rfc3339(Some(now)).as_str().unwrap_or("").to_owned();
    let files: Vec<(String, Value)> = evidence
        .exchanges
        .iter()
        .enumerate()
        .map(|(i, stored)| {
            let mut value = exchange_json(stored);
            value["signature_check"] = signature_check(stored, verifier);
            (
                format!(
                    "exchanges/{:04}-{}.json",
                    i + 1,
                    stored.exchange.direction.as_str()
                ),
                value,
            )
        })
        .collect();
    let events: Vec<Value> = evidence.events.iter().map(event_json).collect();
    let mut contents: Vec<(String, Vec<u8>)> = vec![(
        "report.html".to_owned(),
        report(code, window, evidence, &files, &created).into_bytes(),
    )];
    for (path, value) in &files {
        contents.push((path.clone(), pretty(value)));
    }
    for (stored, path) in evidence.refusals.iter().zip(refusal_paths(evidence)) {
        let mut value = exchange_json(stored);
        value["signature_check"] = signature_check(stored, verifier);
        contents.push((path, pretty(&value)));
    }
    contents.push(("events.json".to_owned(), pretty(&Value::Array(events))));
    let manifest = json!({
        "license": code,
        "sandbox": window.sandbox,
        "from": rfc3339(window.from),
        "to": rfc3339(window.to),
        "created_at": created,
        "files": contents
            .iter()
            .map(|(path, bytes)| json!({
                "path": path,
                "sha256": hex::encode(Sha256::digest(bytes)),
                "bytes": bytes.len(),
            }))
            .collect::<Vec<_>>(),
    });
    contents.push(("manifest.json".to_owned(), pretty(&manifest)));
    let mut zip = ZipWriter::default();
    for (path, bytes) in &contents {
        zip.add(path, bytes);
    }
    zip.finish()
}

/// Where each refusal is kept in the pack.
fn refusal_paths(evidence: &Evidence) -> impl Iterator<Item = String> + '_ {
    (1..=evidence.refusals.len()).map(|i| format!("refusals/{i:04}-in.json"))
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A ZIP archive of stored (uncompressed) entries: a few files of JSON and HTML need nothing
/// more, and any unzip tool reads it.
#[derive(Debug, Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

/// CRC-32 (IEEE 802.3), as ZIP wants it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) {
        let (crc, size, offset) = (
            crc32(data),
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            u32::try_from(self.out.len()).unwrap_or(u32::MAX),
        );
        let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        // Version 2.0, UTF-8 names, stored, 1980-01-01 00:00.
        let common = |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&20u16.to_le_bytes());
            buf.extend_from_slice(&0x0800u16.to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
            buf.extend_from_slice(&0x0021u16.to_le_bytes());
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            buf.extend_from_slice(&name_len.to_le_bytes());
            buf.extend_from_slice(&0u16.to_le_bytes());
        };
        self.out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut self.out);
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(data);
        self.central
            .extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        self.central.extend_from_slice(&20u16.to_le_bytes());
        common(&mut self.central);
        // Comment length, disk, internal and external attributes, local header offset.
        self.central.extend_from_slice(&0u16.to_le_bytes());
        self.central.extend_from_slice(&0u16.to_le_bytes());
        self.central.extend_from_slice(&0u16.to_le_bytes());
        self.central.extend_from_slice(&0u32.to_le_bytes());
        self.central.extend_from_slice(&offset.to_le_bytes());
        self.central.extend_from_slice(name.as_bytes());
        self.entries += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        let offset = u32::try_from(self.out.len()).unwrap_or(u32::MAX);
        let size = u32::try_from(self.central.len()).unwrap_or(u32::MAX);
        self.out.append(&mut self.central);
        self.out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&self.entries.to_le_bytes());
        self.out.extend_from_slice(&size.to_le_bytes());
        self.out.extend_from_slice(&offset.to_le_bytes());
        self.out.extend_from_slice(&0u16.to_le_bytes());
        self.out
    }
}

/// The evidence pack of `code` over `window` as `.zip` bytes (the query API and
/// `licensing-projector evidence`).
pub async fn evidence_pack(
    store: &Store,
    code: &str,
    window: &Window,
    verifier: Option<&koogallery::signature::Verifier>,
) -> Result<Vec<u8>, GatherError> {
    let evidence = gather(store, code, window).await?;
    Ok(build(
        code,
        window,
        &evidence,
        verifier,
        OffsetDateTime::now_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
    }
}
