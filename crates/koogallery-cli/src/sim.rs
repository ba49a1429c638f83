//! `koogallery sim`: a local KooGallery open API. It verifies every request's AK/SK signature as
//! the API gateway does, keeps license codes in states an admin endpoint (or a file) sets, answers
//! with the marketplace's codes, can inject faults, and logs every request for tests to inspect.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use koogallery::apig::{self, Credentials};
use koogallery::market_time::{format_market_time, parse_sdk_date};
use koogallery::openapi::{ACTIVATE_PATH, HEARTBEAT_PATH};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A license code as the simulated marketplace knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SimLicense {
    /// The code.
    pub(crate) license: String,
    /// `unclaimed` (the buyer has not claimed it), `claimed`, `active`, `expired`, `released`.
    pub(crate) state: String,
    /// Expiry, `yyyyMMddHHmmss`.
    #[serde(default = "default_expire")]
    pub(crate) expire_time: String,
    /// Product id.
    #[serde(default = "default_product")]
    pub(crate) product_id: String,
    /// Purchase order id.
    #[serde(default = "default_order")]
    pub(crate) order_id: String,
    /// Quantity.
    #[serde(default = "default_amount")]
    pub(crate) amount: u64,
    /// Activation time, `yyyyMMddHHmmss`, once active.
    #[serde(default)]
    pub(crate) activate_time: Option<String>,
    /// A test code from 卖家中心 (申请测试授权码): activatable without the buyer's claim.
    #[serde(default)]
    pub(crate) test: bool,
}

fn default_expire() -> String {
    "20991231235959".to_owned()
}
fn default_product() -> String {
    "OFFI000000000000000001".to_owned()
}
fn default_order() -> String {
    "CS0000000000SIM".to_owned()
}
fn default_amount() -> u64 {
    1
}

const STATES: [&str; 5] = ["unclaimed", "claimed", "active", "expired", "released"];

/// Faults applied to the next open-API requests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Faults {
    /// Added delay, in milliseconds.
    #[serde(default)]
    pub(crate) latency_ms: u64,
    /// Answer with this HTTP status (e.g. 503) and a gateway error body.
    #[serde(default)]
    pub(crate) status: Option<u16>,
    /// Never answer (the client times out).
    #[serde(default)]
    pub(crate) hang: bool,
    /// Answer 429 `APIGW.0308` (throttled).
    #[serde(default)]
    pub(crate) throttle: bool,
    /// How many requests the faults apply to (then they clear); absent: until cleared.
    #[serde(default)]
    pub(crate) count: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
struct Logged {
    path: String,
    license: Option<String>,
    authorized: bool,
    signed_headers: Option<String>,
    body: Value,
    http_status: u16,
    error_code: String,
}

struct Sim {
    credentials: Credentials,
    max_skew: Duration,
    licenses: Mutex<BTreeMap<String, SimLicense>>,
    faults: Mutex<Option<Faults>>,
    log: Mutex<Vec<Logged>>,
}

fn gateway_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR))
        .json(json!({"error_msg": message, "error_code": code, "request_id": koogallery::sender::fresh_nonce()}))
}

fn market(status: u16, code: &str, message: &str, data: Option<Value>) -> HttpResponse {
    let mut body = json!({"error_code": code, "error_msg": message});
    if let Some(data) = data {
        body["data"] = data;
    }
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK),
    )
    .json(body)
}

impl Sim {
    fn take_fault(&self) -> Option<Faults> {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let current = faults.clone()?;
        if let Some(count) = current.count {
            if count <= 1 {
                *faults = None;
            } else if let Some(f) = faults.as_mut() {
                f.count = Some(count - 1);
            }
        }
        Some(current)
    }

    /// The gateway's check: a signature over the listed headers, a known AK, a fresh date.
    /// The signed headers, or the gateway's refusal as (status, code, message).
    fn authorize(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<String, (u16, &'static str, String)> {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let host = req.connection_info().host().to_owned();
        let url = url::Url::parse(&format!("http://{host}{}", req.uri()))
            .map_err(|_| (400, "APIGW.0201", "Bad request".to_owned()))?;
        let refused = |why: &str| {
            (
                401,
                "APIGW.0301",
                format!("Incorrect IAM authentication information: {why}"),
            )
        };
        let lookup = |ak: &str| (ak == self.credentials.ak).then(|| self.credentials.clone());
        let auth = apig::verify(lookup, req.method().as_str(), &url, &headers, body)
            .map_err(|e| refused(&e.to_string()))?;
        let date = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-sdk-date"))
            .and_then(|(_, v)| parse_sdk_date(v).ok())
            .ok_or_else(|| refused("bad X-Sdk-Date"))?;
        let skew = (time::OffsetDateTime::now_utc() - date).unsigned_abs();
        if skew > self.max_skew {
            return Err(refused("X-Sdk-Date too far from now"));
        }
        Ok(auth.signed_headers.join(";"))
    }

    fn record(
        &self,
        req: &HttpRequest,
        body: &Value,
        signed: Option<String>,
        response: &HttpResponse,
        error_code: &str,
    ) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Logged {
                path: req.path().to_owned(),
                license: body["license"].as_str().map(str::to_owned),
                authorized: signed.is_some(),
                signed_headers: signed,
                body: body.clone(),
                http_status: response.status().as_u16(),
                error_code: error_code.to_owned(),
            });
    }
}

async fn open_api(req: HttpRequest, body: web::Bytes, sim: web::Data<Sim>) -> HttpResponse {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(fault) = sim.take_fault() {
        if fault.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
        }
        if fault.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let injected = if fault.throttle {
            Some(gateway_error(
                429,
                "APIGW.0308",
                "The throttling threshold has been reached",
            ))
        } else {
            fault
                .status
                .map(|status| gateway_error(status, "APIGW.0201", "Backend unavailable"))
        };
        if let Some(response) = injected {
            sim.record(&req, &parsed, None, &response, "fault");
            return response;
        }
    }
    let signed = match sim.authorize(&req, &body) {
        Ok(signed) => signed,
        Err((status, code, message)) => {
            let response = gateway_error(status, code, &message);
            sim.record(&req, &parsed, None, &response, code);
            return response;
        }
    };
    let json_content = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    let (response, code) = if !json_content {
        (
            market(415, "95000003", "Content type not supported", None),
            "95000003",
        )
    } else if parsed.is_null() {
        (
            market(400, "95000004", "req message is not readable", None),
            "95000004",
        )
    } else {
        match req.path() {
            ACTIVATE_PATH => activate(&sim, &parsed),
            HEARTBEAT_PATH => heartbeat(&sim, &parsed),
            _ => (
                gateway_error(
                    404,
                    "APIGW.0101",
                    "The API does not exist or has not been published",
                ),
                "APIGW.0101",
            ),
        }
    };
    sim.record(&req, &parsed, Some(signed), &response, code);
    response
}

fn valid_license(value: &Value) -> Option<String> {
    value
        .as_str()
        .filter(|l| !l.is_empty() && l.len() <= 64)
        .map(str::to_owned)
}

fn activate(sim: &Sim, body: &Value) -> (HttpResponse, &'static str) {
    let Some(code) = valid_license(&body["license"]) else {
        return (
            market(400, "95000001", "req param is invalid", None),
            "95000001",
        );
    };
    if let Some(t) = body.get("real_effect_time") {
        if t.as_str().is_none_or(|t| {
            koogallery::market_time::parse_market_time(t, time::UtcOffset::UTC).is_err()
        }) {
            return (
                market(400, "95000001", "req param is invalid", None),
                "95000001",
            );
        }
    }
    let mut licenses = sim.licenses.lock().unwrap_or_else(|p| p.into_inner());
    let Some(license) = licenses.get_mut(&code) else {
        return (
            market(200, "92020005", "license code not exist.", None),
            "92020005",
        );
    };
    match license.state.as_str() {
        "unclaimed" if !license.test => (
            market(
                200,
                "92020004",
                "can not active before user received.",
                None,
            ),
            "92020004",
        ),
        "unclaimed" | "claimed" => {
            license.state = "active".to_owned();
            license.activate_time = Some(format_market_time(
                time::OffsetDateTime::now_utc(),
                koogallery::market_time::CHINA_STANDARD_TIME,
            ));
            let info = json!({
                "status": "ALIVE",
                "expire_time": license.expire_time,
                "product_id": license.product_id,
                "amount": license.amount,
                "order_id": license.order_id,
            });
            (
                market(
                    200,
                    "92020000",
                    "success",
                    Some(json!({"license_code_info": info.to_string()})),
                ),
                "92020000",
            )
        }
        _ => (market(200, "92020003", "illegal state", None), "92020003"),
    }
}

fn heartbeat(sim: &Sim, body: &Value) -> (HttpResponse, &'static str) {
    let Some(code) = valid_license(&body["license"]) else {
        return (
            market(400, "95000001", "req param is invalid", None),
            "95000001",
        );
    };
    if body["heartbeatInfo"]["thirdPartyAccount"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return (
            market(
                400,
                "95000001",
                "req param is invalid: heartbeatInfo.thirdPartyAccount",
                None,
            ),
            "95000001",
        );
    }
    let licenses = sim.licenses.lock().unwrap_or_else(|p| p.into_inner());
    let Some(license) = licenses.get(&code) else {
        return (
            market(200, "92020005", "license code not exist.", None),
            "92020005",
        );
    };
    let status = match license.state.as_str() {
        "active" => "ALIVE",
        "expired" => "EXPIRED",
        "released" => "RELEASED",
        _ => {
            return (
                market(
                    200,
                    "92020011",
                    "license code has been not activated.",
                    None,
                ),
                "92020011",
            );
        }
    };
    let data = json!({
        "license_code": license.license,
        "status": status,
        "activate_time": license.activate_time,
        "product_id": license.product_id,
        "expire_time": license.expire_time,
    });
    (market(200, "92020000", "success", Some(data)), "92020000")
}

async fn put_license(
    path: web::Path<String>,
    body: web::Json<Value>,
    sim: web::Data<Sim>,
) -> HttpResponse {
    let mut value = body.into_inner();
    value["license"] = Value::String(path.into_inner());
    match serde_json::from_value::<SimLicense>(value) {
        Ok(license) if STATES.contains(&license.state.as_str()) => {
            sim.licenses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(license.license.clone(), license.clone());
            HttpResponse::Ok().json(license)
        }
        Ok(license) => HttpResponse::BadRequest().json(
            json!({"message": format!("state {:?} is not one of {STATES:?}", license.state)}),
        ),
        Err(e) => HttpResponse::BadRequest().json(json!({"message": e.to_string()})),
    }
}

async fn get_license(path: web::Path<String>, sim: web::Data<Sim>) -> HttpResponse {
    match sim
        .licenses
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(path.as_str())
    {
        Some(license) => HttpResponse::Ok().json(license),
        None => HttpResponse::NotFound().json(json!({"message": "unknown license"})),
    }
}

async fn set_faults(body: web::Json<Faults>, sim: web::Data<Sim>) -> HttpResponse {
    *sim.faults.lock().unwrap_or_else(|p| p.into_inner()) = Some(body.into_inner());
    HttpResponse::NoContent().finish()
}

async fn clear_faults(sim: web::Data<Sim>) -> HttpResponse {
    *sim.faults.lock().unwrap_or_else(|p| p.into_inner()) = None;
    HttpResponse::NoContent().finish()
}

async fn requests(sim: web::Data<Sim>) -> HttpResponse {
    HttpResponse::Ok().json(&*sim.log.lock().unwrap_or_else(|p| p.into_inner()))
}

async fn clear_requests(sim: web::Data<Sim>) -> HttpResponse {
    sim.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    HttpResponse::NoContent().finish()
}

/// Runs the simulator until ctrl-c; prints one JSON line with the bound address when ready.
pub(crate) async fn run(
    listen: &str,
    credentials: Credentials,
    licenses: Vec<SimLicense>,
    max_skew: Duration,
) -> std::io::Result<()> {
    let sim = web::Data::new(Sim {
        credentials,
        max_skew,
        licenses: Mutex::new(
            licenses
                .into_iter()
                .map(|l| (l.license.clone(), l))
                .collect(),
        ),
        faults: Mutex::new(None),
        log: Mutex::new(Vec::new()),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sim.clone())
            .app_data(web::PayloadConfig::new(12 * 1024 * 1024))
            .route("/admin/licenses/{code}", web::put().to(put_license))
            .route("/admin/licenses/{code}", web::get().to(get_license))
            .route("/admin/faults", web::post().to(set_faults))
            .route("/admin/faults", web::delete().to(clear_faults))
            .route("/admin/requests", web::get().to(requests))
            .route("/admin/requests", web::delete().to(clear_requests))
            .default_service(web::to(open_api))
    })
    .workers(2)
    .bind(listen)?;
    let address = server.addrs()[0];
    // One JSON line with the bound address, for whoever started the simulator.
    println!(
        "{}",
        json!({"message": "koogallery sim ready", "listen": address.to_string()})
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run().await
}
