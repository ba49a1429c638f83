//! `koogallery scenario FILE`: plays a license's lifecycle against a running backend, with the
//! simulator playing the marketplace, and checks every answer.
//!
//! The file is JSON: the endpoints, then steps run in order:
//!
//! ```json
//! {"callback_url": "http://127.0.0.1:8080/koogallery/license", "key": "…",
//!  "internal_url": "http://127.0.0.1:8081", "query_url": "http://127.0.0.1:8083", "token": "…",
//!  "simulator_url": "http://127.0.0.1:9090", "license": "PL…",
//!  "steps": [
//!    {"marketplace": "unclaimed"},                       // the simulator's state of the code
//!    {"activate": {}, "expect_http": 202},               // internal API
//!    {"wait_event": "activation_awaiting_claim"},        // until the license's history shows it
//!    {"marketplace": "claimed"}, {"wait_event": "activated"},
//!    {"usage": {"account": "alice"}, "expect_http": 200},
//!    {"wait_event": "heartbeat_acknowledged"},
//!    {"callback": "renew", "expire": "20301231235959", "order": "CS1"},   // expects 000000
//!    {"callback": "freeze"}, {"callback": "release"},
//!    {"expect_status": "released"}                       // the query API's view
//!    // wait_event and expect_status wait up to "timeout_seconds" (default 30)
//!  ]}
//! ```

use std::time::{Duration, Instant};

use koogallery::signature::AccessKey;
use serde_json::{Value, json};
use url::Url;

use crate::send::{callback_body, send};

fn text<'a>(file: &'a Value, name: &str) -> Result<&'a str, String> {
    file[name]
        .as_str()
        .ok_or_else(|| format!("the scenario needs a string `{name}`"))
}

struct Runner<'a> {
    file: &'a Value,
    http: reqwest::Client,
    license: String,
}

impl Runner<'_> {
    async fn events(&self) -> Result<Vec<String>, String> {
        let url = format!(
            "{}/v1/licenses/{}/events",
            text(self.file, "query_url")?,
            self.license
        );
        let response = self
            .http
            .get(url)
            .bearer_auth(text(self.file, "token")?)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status() == 404 {
            return Ok(Vec::new());
        }
        let events: Value = response.json().await.map_err(|e| e.to_string())?;
        Ok(events
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["event_type"].as_str().map(str::to_owned))
            .collect())
    }

    async fn internal(
        &self,
        route: &str,
        body: &Value,
        expect: Option<u64>,
    ) -> Result<String, String> {
        let url = format!(
            "{}/v1/licenses/{}/{route}",
            text(self.file, "internal_url")?,
            self.license
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(text(self.file, "token")?)
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = u64::from(response.status().as_u16());
        let answer = response.text().await.unwrap_or_default();
        match expect {
            Some(expected) if expected != status => {
                Err(format!("HTTP {status}, expected {expected}: {answer}"))
            }
            _ => Ok(format!("HTTP {status}")),
        }
    }

    async fn step(&self, step: &Value) -> Result<String, String> {
        if let Some(state) = step["marketplace"].as_str() {
            let url = format!(
                "{}/admin/licenses/{}",
                text(self.file, "simulator_url")?,
                self.license
            );
            let mut license = step
                .get("license_info")
                .cloned()
                .unwrap_or_else(|| json!({}));
            license["state"] = json!(state);
            let response = self
                .http
                .put(url)
                .json(&license)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            return if response.status().is_success() {
                Ok(format!("marketplace: {state}"))
            } else {
                Err(format!("simulator answered {}", response.status()))
            };
        }
        if let Some(body) = step.get("activate") {
            return self
                .internal("activation", body, step["expect_http"].as_u64())
                .await;
        }
        if let Some(body) = step.get("usage") {
            return self
                .internal("usage", body, step["expect_http"].as_u64())
                .await;
        }
        if let Some(kind) = step["callback"].as_str() {
            let body = callback_body(
                kind,
                &self.license,
                step["expire"].as_str(),
                step["order"].as_str(),
                step["scene"].as_str().unwrap_or("RENEWAL"),
                step["test"].as_bool().unwrap_or(false),
            )?;
            let url = Url::parse(text(self.file, "callback_url")?).map_err(|e| e.to_string())?;
            let key = AccessKey::new(text(self.file, "key")?);
            let expected = step["expect"].as_str().unwrap_or("000000");
            let answer = match send(&url, &key, &body).await {
                Ok(answer) => answer,
                Err(report) => report.lines().next().unwrap_or_default().to_owned(),
            };
            let code = serde_json::from_str::<Value>(&answer)
                .ok()
                .and_then(|v| v["resultCode"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return if code == expected {
                Ok(format!("{kind}: {code}"))
            } else {
                Err(format!("{kind}: expected {expected}, got {answer}"))
            };
        }
        if let Some(event) = step["wait_event"].as_str() {
            let deadline = Instant::now()
                + Duration::from_secs(step["timeout_seconds"].as_u64().unwrap_or(30));
            loop {
                if self.events().await?.iter().any(|e| e == event) {
                    return Ok(format!("event {event}"));
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "no {event} event within the timeout; history: {:?}",
                        self.events().await?
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if let Some(status) = step["expect_status"].as_str() {
            let url = format!(
                "{}/v1/licenses/{}",
                text(self.file, "query_url")?,
                self.license
            );
            let deadline = Instant::now()
                + Duration::from_secs(step["timeout_seconds"].as_u64().unwrap_or(30));
            loop {
                let view: Value = self
                    .http
                    .get(&url)
                    .bearer_auth(text(self.file, "token")?)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .unwrap_or(Value::Null);
                if view["status"] == status {
                    return Ok(format!("status {status}"));
                }
                if Instant::now() > deadline {
                    return Err(format!("status {}, expected {status}", view["status"]));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Err(format!("unknown step {step}"))
    }
}

/// Runs a scenario; returns the report lines and whether every step passed.
pub(crate) async fn run(text_of_file: &str) -> Result<(Vec<String>, bool), String> {
    let file: Value =
        serde_json::from_str(text_of_file).map_err(|e| format!("the scenario is not JSON: {e}"))?;
    let steps = file["steps"]
        .as_array()
        .ok_or("the scenario needs `steps`, an array")?;
    let runner = Runner {
        file: &file,
        http: reqwest::Client::new(),
        license: text(&file, "license")?.to_owned(),
    };
    let mut lines = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match runner.step(step).await {
            Ok(what) => lines.push(format!("PASS {}: {what}", i + 1)),
            Err(why) => {
                lines.push(format!("FAIL {}: {why}", i + 1));
                lines.push(format!("{} passed, 1 failed", i));
                return Ok((lines, false));
            }
        }
    }
    lines.push(format!("{} passed, 0 failed", steps.len()));
    Ok((lines, true))
}
