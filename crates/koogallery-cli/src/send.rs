//! `koogallery send` and `koogallery probe`: play the marketplace's side of callbacks against a
//! seller's URL, signed as KooGallery signs them.

use std::time::Duration;

use koogallery::sender::{CallbackAnswer, send_callback};
use koogallery::signature::AccessKey;
use serde_json::{Value, json};
use url::Url;

/// KooGallery waits this long for an answer.
const MARKETPLACE_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of a callback, keys in the marketplace's (sorted) order.
pub(crate) fn callback_body(
    kind: &str,
    license: &str,
    expire: Option<&str>,
    order: Option<&str>,
    scene: &str,
    test: bool,
) -> Result<String, String> {
    let test_flag = if test { "1" } else { "0" };
    let body = match kind {
        "renew" => {
            let expire = expire.ok_or("renew needs --expire yyyyMMddHHmmss")?;
            let order = order.unwrap_or("CSSIM0000000001");
            json!({"activity": "refreshLicenseCode", "expireTime": expire, "license": license, "orderId": order,
                   "orderLineId": format!("{order}-000001"), "scene": scene, "testFlag": test_flag})
        }
        "freeze" | "unfreeze" => json!({"activity": "updateLicenseCodeStatus", "license": license,
                                        "status": kind.to_ascii_uppercase(), "testFlag": test_flag}),
        "release" => {
            let mut body = json!({"activity": "releaseLicenseCode", "license": license, "testFlag": test_flag});
            if let Some(order) = order {
                body["orderId"] = json!(order);
                body["orderLineId"] = json!(format!("{order}-000001"));
            }
            body
        }
        other => {
            return Err(format!(
                "unknown callback {other:?}: renew, freeze, unfreeze or release"
            ));
        }
    };
    Ok(body.to_string())
}

fn verdict(answer: &CallbackAnswer) -> Result<(), String> {
    if answer.http_status != 200 {
        return Err(format!(
            "HTTP {} (KooGallery expects 200): {}",
            answer.http_status, answer.body
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

/// Sends one callback; prints the answer; `Ok` when it is `000000`.
pub(crate) async fn send(url: &Url, key: &AccessKey, body: &str) -> Result<String, String> {
    let answer = send_callback(url, key, body.as_bytes(), MARKETPLACE_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    verdict(&answer)
        .map(|()| answer.body.clone())
        .map_err(|reason| format!("{}\n{reason}", answer.body))
}

/// One saved debug case (调测用例): a name and the body KooGallery replays.
fn cases(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the cases file is not JSON: {e}"))?;
    let list = value
        .as_array()
        .ok_or("the cases file must hold a JSON array")?;
    list.iter()
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
            Ok((name, body))
        })
        .collect()
}

/// Replays every case as the twice-daily probe does; returns the report lines and whether all passed.
pub(crate) async fn probe(
    url: &Url,
    key: &AccessKey,
    cases_text: &str,
) -> Result<(Vec<String>, bool), String> {
    let cases = cases(cases_text)?;
    if cases.is_empty() {
        return Err("the cases file holds no case".to_owned());
    }
    let mut lines = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for (name, body) in cases {
        match send_callback(url, key, body.as_bytes(), MARKETPLACE_TIMEOUT).await {
            Ok(answer) => match verdict(&answer) {
                Ok(()) => {
                    passed += 1;
                    lines.push(format!("PASS {name} ({} ms)", answer.elapsed.as_millis()));
                }
                Err(reason) => {
                    failed += 1;
                    lines.push(format!("FAIL {name}: {reason}"));
                }
            },
            Err(e) => {
                failed += 1;
                lines.push(format!("FAIL {name}: {e}"));
            }
        }
    }
    lines.push(format!("{passed} passed, {failed} failed"));
    Ok((lines, failed == 0))
}
