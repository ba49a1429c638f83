//! The dispute evidence pack (证据包): one `.zip` holding a license's timeline and ledger as a
//! printable `report.html` (English and Chinese headings, `report.rs`), every exchange as it was stored
//! (`exchanges/NNNN-in.json`, `…-out.json`), apart from them the requests refused that named the
//! license (`refusals/NNNN-in.json`, ADR 0018), its events (`events.json`) and `manifest.json` listing
//! every other file's SHA-256. Callback signatures are verified again while the pack is built, with
//! the key's index recorded, never the key.

use koogallery::signature::{SignatureParams, Verifier};
use licensing_store::{Direction, Store, StoredExchange};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::evidence::report::report;
use crate::evidence::{Evidence, GatherError, Window, exchange_json, gather};
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
    let refusal_paths: Vec<String> = (1..=evidence.refusals.len())
        .map(|i| format!("refusals/{i:04}-in.json"))
        .collect();
    let report = report(code, window, evidence, &files, &refusal_paths, &created);
    let mut contents: Vec<(String, Vec<u8>)> =
        vec![("report.html".to_owned(), report.into_bytes())];
    for (path, value) in &files {
        contents.push((path.clone(), pretty(value)));
    }
    for (stored, path) in evidence.refusals.iter().zip(refusal_paths) {
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
}
