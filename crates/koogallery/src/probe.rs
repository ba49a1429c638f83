//! The marketplace's twice-daily probe (拨测, spec §5, D21): the saved debug cases replayed against a
//! seller's callback URL, each answer judged as the marketplace judges it (HTTP 200, a JSON callback
//! answer, `resultCode` `000000`, within 5 s). Shared by `koogallery probe` and the backend's probe
//! tools.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::sender::{CallbackAnswer, send_callback};
use crate::signature::AccessKey;

/// The `User-Agent` of the probe's requests, so that the backend tells them from the marketplace's
/// own probes (D21).
pub const PROBE_USER_AGENT: &str = "koogallery-probe/1";

/// KooGallery waits this long for an answer.
pub const MARKETPLACE_TIMEOUT: Duration = Duration::from_secs(5);

/// One saved debug case (调测用例): a name and the body KooGallery replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCase {
    /// The case's name (`case N` when the file gives none).
    pub name: String,
    /// The callback body, exactly as sent.
    pub body: String,
}

/// Reads a cases file: a JSON array of callback bodies, or of `{"name": …, "body": …}`.
pub fn cases(text: &str) -> Result<Vec<ProbeCase>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the cases file is not JSON: {e}"))?;
    let list = value
        .as_array()
        .ok_or("the cases file must hold a JSON array")?;
    if list.is_empty() {
        return Err("the cases file holds no case".to_owned());
    }
    Ok(list
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let (name, body) = match case.get("body") {
                Some(body) => (
                    case["name"]
                        .as_str()
                        .map_or_else(|| format!("case {}", i + 1), str::to_owned),
                    body,
                ),
                None => (format!("case {}", i + 1), case),
            };
            let body = match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ProbeCase { name, body }
        })
        .collect())
}

/// Whether an answer is one the marketplace accepts; else why not.
pub fn verdict(answer: &CallbackAnswer) -> Result<(), String> {
    if answer.http_status != 200 {
        return Err(format!(
            "HTTP {} (KooGallery expects 200): {}",
            answer.http_status, answer.body
        ));
    }
    if answer.elapsed > MARKETPLACE_TIMEOUT {
        return Err(format!(
            "answered in {} ms (KooGallery waits 5000 ms)",
            answer.elapsed.as_millis()
        ));
    }
    match &answer.response {
        Some(r) if r.result_code.as_str() == "000000" => Ok(()),
        Some(r) => Err(format!(
            "resultCode {} {:?}",
            r.result_code.as_str(),
            r.result_msg
        )),
        None => Err(format!("not a callback answer: {}", answer.body)),
    }
}

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case.
    pub case: ProbeCase,
    /// `None` when it passed; else why it failed.
    pub failure: Option<String>,
    /// The answer, when one came.
    pub answer: Option<CallbackAnswer>,
}

impl CaseOutcome {
    /// `PASS name (N ms)` or `FAIL name: reason`.
    pub fn line(&self) -> String {
        match (&self.failure, &self.answer) {
            (None, Some(answer)) => {
                format!(
                    "PASS {} ({} ms)",
                    self.case.name,
                    answer.elapsed.as_millis()
                )
            }
            (None, None) => format!("PASS {}", self.case.name),
            (Some(reason), _) => format!("FAIL {}: {reason}", self.case.name),
        }
    }
}

/// Sends each case to `url`, signed with `key`, one after the other.
pub async fn run(url: &Url, key: &AccessKey, cases: &[ProbeCase]) -> Vec<CaseOutcome> {
    let mut outcomes = Vec::with_capacity(cases.len());
    for case in cases {
        let outcome = match send_callback(
            url,
            key,
            case.body.as_bytes(),
            MARKETPLACE_TIMEOUT,
            Some(PROBE_USER_AGENT),
        )
        .await
        {
            Ok(answer) => CaseOutcome {
                case: case.clone(),
                failure: verdict(&answer).err(),
                answer: Some(answer),
            },
            Err(e) => CaseOutcome {
                case: case.clone(),
                failure: Some(e.to_string()),
                answer: None,
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}
