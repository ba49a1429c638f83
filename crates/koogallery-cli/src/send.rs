//! `koogallery send` and `koogallery probe`: play the marketplace's side of callbacks against a
//! seller's URL, signed as KooGallery signs them.

use koogallery::probe::{self, MARKETPLACE_TIMEOUT, verdict};
use koogallery::sender::send_callback;
use koogallery::signature::AccessKey;
use serde_json::json;
use url::Url;

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

/// Sends one callback; prints the answer; `Ok` when it is `000000`.
pub(crate) async fn send(url: &Url, key: &AccessKey, body: &str) -> Result<String, String> {
    let answer = send_callback(url, key, body.as_bytes(), MARKETPLACE_TIMEOUT, None)
        .await
        .map_err(|e| e.to_string())?;
    verdict(&answer)
        .map(|()| answer.body.clone())
        .map_err(|reason| format!("{}\n{reason}", answer.body))
}

/// Replays every case as the twice-daily probe does; returns the report lines and whether all passed.
pub(crate) async fn probe(
    url: &Url,
    key: &AccessKey,
    cases_text: &str,
) -> Result<(Vec<String>, bool), String> {
    let cases = probe::cases(cases_text)?;
    let outcomes = probe::run(url, key, &cases).await;
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let mut lines: Vec<String> = outcomes.iter().map(probe::CaseOutcome::line).collect();
    lines.push(format!(
        "{} passed, {failed} failed",
        outcomes.len() - failed
    ));
    Ok((lines, failed == 0))
}
