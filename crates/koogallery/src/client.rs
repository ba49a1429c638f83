//! An async client for the open API: AK/SK-signed, certificates always verified, fallback host (D17).

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::apig::{self, Credentials};
use crate::classify::{Disposition, classify};
use crate::market_time::format_sdk_date;
use crate::openapi::{
    ACTIVATE_PATH, ActivateData, ActivateRequest, ApiResponse, HEARTBEAT_PATH, HeartbeatData,
    HeartbeatRequest,
};

/// The production host (D17).
pub const PRIMARY_URL: &str = "https://mkt.myhuaweicloud.com";
/// The fallback host, tried on a connection failure or a 5xx from the primary (D17).
pub const FALLBACK_URL: &str = "https://mkt.myhuaweicloud.cn";

/// How to reach the open API.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// First host to call.
    pub base_url: Url,
    /// Host to call when the first cannot be reached or answers 5xx.
    pub fallback_url: Option<Url>,
    /// AK/SK.
    pub credentials: Credentials,
    /// PEM file content with extra CA certificates to trust beside the system roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole call.
    pub timeout: Duration,
    /// Accept plain `http://` to hosts other than loopback (a simulator in another container);
    /// never for the real marketplace.
    pub allow_http: bool,
}

impl ClientConfig {
    /// The production marketplace with its fallback host.
    pub fn production(credentials: Credentials) -> Self {
        Self {
            base_url: Url::parse(PRIMARY_URL).unwrap_or_else(|e| unreachable!("constant URL: {e}")),
            fallback_url: Url::parse(FALLBACK_URL).ok(),
            credentials,
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            allow_http: false,
        }
    }

    /// Another base URL (the simulator, a test), without fallback.
    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = base_url;
        self.fallback_url = None;
        self
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Plain `http://` is accepted only for loopback addresses (tests, the simulator).
    #[error("{0} is not https; plain http is accepted only for loopback addresses")]
    InsecureUrl(Url),
    /// The URL is neither http nor https, or has no host.
    #[error("{0} is not an http(s) URL with a host")]
    UnsupportedUrl(Url),
    /// The extra CA file holds no usable certificate.
    #[error("the CA file holds no PEM certificate: {0}")]
    BadCertificate(String),
    /// The HTTP stack could not be set up.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A call that got no HTTP answer from any host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} calling {url}: {message}")]
pub struct CallError {
    /// `timeout`, `connect` or `transport`.
    pub kind: &'static str,
    /// The URL last tried.
    pub url: String,
    /// What happened.
    pub message: String,
}

impl CallError {
    /// Always retryable (D16: timeouts and connection failures are retried).
    pub fn disposition(&self) -> Disposition {
        Disposition::Retry
    }
}

/// One HTTP attempt of a call as it went on the wire, for the evidence log (D20): what was sent,
/// to which host, and what came back (or the error), with the latency.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// `POST`.
    pub method: &'static str,
    /// The URL called.
    pub url: String,
    /// 0 for the primary host, 1 for the fallback (D17).
    pub host_index: usize,
    /// The headers we set, `Authorization` included (a signature, never the SK).
    pub request_headers: Vec<(String, String)>,
    /// The request body, byte for byte.
    pub request_body: Vec<u8>,
    /// When the request was sent.
    pub sent_at: time::OffsetDateTime,
    /// From sending to the answer (or the error).
    pub latency: Duration,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The answer's headers.
    pub response_headers: Vec<(String, String)>,
    /// The answer's body, byte for byte, when one came.
    pub response_body: Option<Vec<u8>>,
    /// What went wrong when no (complete) answer came.
    pub error: Option<CallError>,
}

/// A call's outcome with every attempt it made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<T> {
    /// The answer that counts, or the last error.
    pub outcome: Result<Reply<T>, CallError>,
    /// Each attempt, in order (the primary host, then the fallback if it was tried).
    pub attempts: Vec<Attempt>,
}

/// An HTTP answer from the open API, read tolerantly.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The host that answered.
    pub base_url: Url,
    /// The HTTP status.
    pub http_status: u16,
    /// The body, when it was a JSON object (gateway errors included).
    pub body: Option<ApiResponse<T>>,
    /// The body as text.
    pub raw_body: String,
    /// What the answer means (D16).
    pub disposition: Disposition,
}

impl<T: DeserializeOwned> Reply<T> {
    /// Reads an answer tolerantly, whatever its bytes: a JSON object becomes the body (a `data`
    /// that does not fit `T` is dropped, and kept in the raw body), and the status and the code
    /// decide what it means (D16).
    pub fn decode(base_url: Url, http_status: u16, raw_body: String) -> Self {
        let body = parse_body::<T>(&raw_body);
        let disposition = classify(http_status, body.as_ref().map(|b| b.error_code.as_str()));
        Self {
            base_url,
            http_status,
            body,
            raw_body,
            disposition,
        }
    }
}

impl<T> Reply<T> {
    /// The `error_code`, or `HTTP <status>` when the body had none.
    pub fn code(&self) -> String {
        self.body
            .as_ref()
            .map(|b| b.error_code.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("HTTP {}", self.http_status))
    }

    /// The `error_msg`, or the start of the raw body.
    pub fn message(&self) -> String {
        match &self.body {
            Some(body) if !body.error_msg.is_empty() => body.error_msg.clone(),
            _ => self.raw_body.chars().take(200).collect(),
        }
    }
}

/// The open-API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    bases: Vec<Url>,
    credentials: Credentials,
}

fn check_url(url: &Url, allow_http: bool) -> Result<(), ClientError> {
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::UnsupportedUrl(url.clone()))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let loopback =
                bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback || allow_http {
                Ok(())
            } else {
                Err(ClientError::InsecureUrl(url.clone()))
            }
        }
        _ => Err(ClientError::UnsupportedUrl(url.clone())),
    }
}

impl Client {
    /// Builds a client. Certificates are verified against the system roots (plus the extra CA,
    /// if given); there is no way to turn verification off.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let bases: Vec<Url> = std::iter::once(config.base_url)
            .chain(config.fallback_url)
            .collect();
        for base in &bases {
            check_url(base, config.allow_http)?;
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &config.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::BadCertificate(e.to_string()))?;
            if certs.is_empty() {
                return Err(ClientError::BadCertificate("empty bundle".to_owned()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Self {
            http,
            bases,
            credentials: config.credentials,
        })
    }

    /// `POST …/v1/license/activate`.
    pub async fn activate(
        &self,
        request: &ActivateRequest,
    ) -> Result<Reply<ActivateData>, CallError> {
        self.activate_recorded(request).await.outcome
    }

    /// [`Client::activate`], with every attempt as it went on the wire.
    pub async fn activate_recorded(&self, request: &ActivateRequest) -> Call<ActivateData> {
        self.call(ACTIVATE_PATH, request).await
    }

    /// `POST …/v1/license/heartbeat`.
    pub async fn heartbeat(
        &self,
        request: &HeartbeatRequest,
    ) -> Result<Reply<HeartbeatData>, CallError> {
        self.heartbeat_recorded(request).await.outcome
    }

    /// [`Client::heartbeat`], with every attempt as it went on the wire.
    pub async fn heartbeat_recorded(&self, request: &HeartbeatRequest) -> Call<HeartbeatData> {
        self.call(HEARTBEAT_PATH, request).await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(&self, path: &str, request: &B) -> Call<T> {
        let body = serde_json::to_vec(request)
            .unwrap_or_else(|e| unreachable!("request types serialise: {e}"));
        let mut attempts = Vec::with_capacity(self.bases.len());
        let mut last = None;
        for (i, base) in self.bases.iter().enumerate() {
            let has_next = i + 1 < self.bases.len();
            let (outcome, mut attempt) = self.send(base, path, &body).await;
            attempt.host_index = i;
            attempts.push(attempt);
            match outcome {
                Ok(reply) if reply.http_status >= 500 && has_next => {
                    tracing::warn!(url = %base, status = reply.http_status, "open API answered 5xx, trying the fallback host");
                    last = Some(Ok(reply));
                }
                Ok(reply) => {
                    last = Some(Ok(reply));
                    break;
                }
                Err(error) => {
                    tracing::warn!(url = %base, %error, "open API unreachable");
                    last = Some(Err(error));
                }
            }
        }
        Call {
            outcome: last.unwrap_or_else(|| unreachable!("there is at least one base URL")),
            attempts,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        base: &Url,
        path: &str,
        body: &[u8],
    ) -> (Result<Reply<T>, CallError>, Attempt) {
        let url = endpoint(base, path);
        let sent_at = time::OffsetDateTime::now_utc();
        let date = format_sdk_date(sent_at);
        let headers = apig::default_headers(&url, "application/json", &date, &[]);
        let signature = apig::sign(&self.credentials, "POST", &url, &headers, body)
            .unwrap_or_else(|e| unreachable!("the default headers hold the date: {e}"));
        let mut request = self.http.post(url.clone()).body(body.to_vec());
        let mut request_headers: Vec<(String, String)> = headers
            .iter()
            .filter(|(n, _)| n != "Host")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        request_headers.push(("Authorization".to_owned(), signature.authorization));
        request_headers.push(("User-Agent".to_owned(), USER_AGENT.to_owned()));
        for (name, value) in &request_headers {
            request = request.header(name, value);
        }
        let mut attempt = Attempt {
            method: "POST",
            url: url.to_string(),
            host_index: 0,
            request_headers,
            request_body: body.to_vec(),
            sent_at,
            latency: Duration::ZERO,
            status: None,
            response_headers: Vec::new(),
            response_body: None,
            error: None,
        };
        let started = std::time::Instant::now();
        let outcome = self.exchange(request, &url, &mut attempt).await;
        attempt.latency = started.elapsed();
        let outcome = outcome.map(|(status, raw)| {
            let reply = Reply::decode(base.clone(), status, String::from_utf8_lossy(&raw).into_owned());
            tracing::debug!(url = %url, http_status = status, code = reply.body.as_ref().map(|b| b.error_code.as_str()), disposition = reply.disposition.as_str(), "open API answered");
            reply
        });
        if let Err(error) = &outcome {
            attempt.error = Some(error.clone());
        }
        (outcome, attempt)
    }

    /// Sends `request`; the status and the body's bytes, with the answer's headers and body noted
    /// in `attempt` as they arrive.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        attempt: &mut Attempt,
    ) -> Result<(u16, Vec<u8>), CallError> {
        let fail = |kind, error: reqwest::Error| CallError {
            kind,
            url: url.to_string(),
            message: error_chain(&error),
        };
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            fail(kind, e)
        })?;
        let status = response.status().as_u16();
        attempt.status = Some(status);
        attempt.response_headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let raw = response.bytes().await.map_err(|e| {
            fail(
                if e.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                },
                e,
            )
        })?;
        attempt.response_body = Some(raw.to_vec());
        Ok((status, raw.to_vec()))
    }
}

/// Our `User-Agent`.
const USER_AGENT: &str = concat!("koogallery-rs/", env!("CARGO_PKG_VERSION"));

/// `base` with its path replaced by `path` (a base may carry a prefix, which is kept).
fn endpoint(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url
}

/// Reads a body tolerantly: a JSON object becomes an [`ApiResponse`]; a `data` that does not fit
/// `T` is dropped (kept in the raw body) rather than failing the whole answer.
fn parse_body<T: DeserializeOwned>(raw: &str) -> Option<ApiResponse<T>> {
    let generic: ApiResponse<Value> = serde_json::from_str(raw).ok()?;
    let data = generic
        .data
        .and_then(|value| serde_json::from_value::<T>(value).ok());
    Some(ApiResponse {
        error_code: generic.error_code,
        error_msg: generic.error_msg,
        data,
        request_id: generic.request_id,
        extra: generic.extra,
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ClientConfig {
        ClientConfig::production(Credentials::new("AK", "SK"))
            .with_base_url(Url::parse(url).unwrap())
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
            "https://example.com",
        ] {
            assert!(Client::new(config(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1:80",
            "http://192.168.1.1",
        ] {
            assert!(
                matches!(Client::new(config(bad)), Err(ClientError::InsecureUrl(_))),
                "{bad}"
            );
            let allowed = ClientConfig {
                allow_http: true,
                ..config(bad)
            };
            assert!(Client::new(allowed).is_ok(), "{bad} with allow_http");
        }
        assert!(matches!(
            Client::new(config("ftp://example.com")),
            Err(ClientError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let mut config = config("https://example.com");
        config.extra_ca_pem = Some(b"not a certificate".to_vec());
        assert!(matches!(
            Client::new(config),
            Err(ClientError::BadCertificate(_))
        ));
    }

    #[test]
    fn endpoints_keep_a_base_prefix() {
        let base = Url::parse("http://127.0.0.1:9/sim/").unwrap();
        assert_eq!(
            endpoint(&base, ACTIVATE_PATH).path(),
            "/sim/api/mkp-openapi-public/global/v1/license/activate"
        );
        let base = Url::parse(PRIMARY_URL).unwrap();
        assert_eq!(
            endpoint(&base, HEARTBEAT_PATH).as_str(),
            "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/heartbeat"
        );
    }
}
