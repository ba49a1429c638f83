//! The open-API client against a loopback stand-in for the marketplace that verifies every AK/SK
//! signature with the gateway's rules, answers from a script, and records what it received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use koogallery::apig::{self, Credentials};
use koogallery::classify::Disposition;
use koogallery::client::{Client, ClientConfig};
use koogallery::openapi::{ActivateRequest, HeartbeatInfo, HeartbeatRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

const AK: &str = "AKEXAMPLE0000000";
const SK: &str = "SKEXAMPLE0000000000000000000000000000000";

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    signature_ok: bool,
}

/// A stand-in marketplace: answers `(status, body)` in turn (the last one repeats), or stays
/// silent when the status is 0.
struct Marketplace {
    url: Url,
    received: Arc<Mutex<Vec<Received>>>,
}

async fn read_request(
    stream: &mut TcpStream,
) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[header_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, headers, body))
}

async fn marketplace(script: Vec<(u16, &'static str)>) -> Marketplace {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let base = url.clone();
    tokio::spawn(async move {
        let mut turn = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (status, body) = script[turn.min(script.len() - 1)];
            turn += 1;
            let log = log.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let Some((method, path, headers, request_body)) = read_request(&mut stream).await
                else {
                    return;
                };
                let url = base.join(&path).unwrap();
                let lookup = |ak: &str| (ak == AK).then(|| Credentials::new(AK, SK));
                let signature_ok =
                    apig::verify(lookup, &method, &url, &headers, &request_body).is_ok();
                log.lock().unwrap().push(Received {
                    path,
                    headers,
                    body: request_body,
                    signature_ok,
                });
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let (status, body) = if signature_ok {
                    (status, body)
                } else {
                    (
                        401,
                        r#"{"error_msg":"Incorrect IAM authentication information","error_code":"APIGW.0301","request_id":"r1"}"#,
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Marketplace { url, received }
}

fn client(base: &Url, fallback: Option<&Url>, sk: &str) -> Client {
    let mut config = ClientConfig::production(Credentials::new(AK, sk)).with_base_url(base.clone());
    config.fallback_url = fallback.cloned();
    config.timeout = Duration::from_millis(800);
    Client::new(config).unwrap()
}

const ACTIVATED: &str = r#"{"error_code":"92020000","error_msg":"success","data":{"license_code_info":"{\"status\":\"ALIVE\",\"expire_time\":\"20230726121646\",\"product_id\":\"12345\",\"amount\":2,\"order_id\":\"CS123\"}"}}"#;

fn activate_request() -> ActivateRequest {
    ActivateRequest {
        license: "PL0000000001".into(),
        real_effect_time: None,
    }
}

#[tokio::test]
async fn activate_is_signed_and_its_answer_decoded() {
    let market = marketplace(vec![(200, ACTIVATED)]).await;
    let reply = client(&market.url, None, SK)
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(reply.disposition, Disposition::Success);
    let info = reply
        .body
        .unwrap()
        .data
        .unwrap()
        .license_code_info
        .parsed
        .unwrap();
    assert_eq!(info.order_id.as_deref(), Some("CS123"));
    let received = market.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert!(received[0].signature_ok);
    assert_eq!(
        received[0].path,
        "/api/mkp-openapi-public/global/v1/license/activate"
    );
    assert_eq!(received[0].body, br#"{"license":"PL0000000001"}"#);
    let auth = received[0]
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .unwrap();
    assert!(
        auth.1
            .contains("SignedHeaders=content-type;host;x-sdk-date"),
        "{}",
        auth.1
    );
}

#[tokio::test]
async fn heartbeat_always_sends_the_third_party_account() {
    let market = marketplace(vec![(200, r#"{"error_code":"92020000","error_msg":"success","data":{"license_code":"PL1","status":"RELEASED"}}"#)]).await;
    let request = HeartbeatRequest {
        license: "PL1".into(),
        heartbeat_info: HeartbeatInfo {
            third_party_account: "alice".into(),
            ip: None,
        },
    };
    let reply = client(&market.url, None, SK)
        .heartbeat(&request)
        .await
        .unwrap();
    assert_eq!(
        reply.body.unwrap().data.unwrap().status.as_deref(),
        Some("RELEASED")
    );
    let received = market.received.lock().unwrap().clone();
    assert_eq!(
        received[0].body,
        br#"{"license":"PL1","heartbeatInfo":{"thirdPartyAccount":"alice"}}"#
    );
}

#[tokio::test]
async fn wrong_credentials_get_the_gateway_error() {
    let market = marketplace(vec![(200, ACTIVATED)]).await;
    let reply = client(&market.url, None, "wrong-sk")
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(reply.http_status, 401);
    assert_eq!(reply.code(), "APIGW.0301");
    assert_eq!(reply.disposition, Disposition::Credentials);
    assert!(!market.received.lock().unwrap()[0].signature_ok);
}

#[tokio::test]
async fn marketplace_codes_are_classified() {
    let market = marketplace(vec![(
        200,
        r#"{"error_code":"92020004","error_msg":"can not active before user received."}"#,
    )])
    .await;
    let reply = client(&market.url, None, SK)
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(
        (reply.disposition, reply.code(), reply.message()),
        (
            Disposition::AwaitingClaim,
            "92020004".to_owned(),
            "can not active before user received.".to_owned()
        )
    );
}

#[tokio::test]
async fn the_fallback_host_is_used_when_the_first_is_down_or_failing() {
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap()
    };
    let fallback = marketplace(vec![(200, ACTIVATED)]).await;
    let reply = client(&down, Some(&fallback.url), SK)
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(
        (reply.disposition, &reply.base_url),
        (Disposition::Success, &fallback.url)
    );

    let failing = marketplace(vec![(503, "<html>unavailable</html>")]).await;
    let reply = client(&failing.url, Some(&fallback.url), SK)
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(reply.base_url, fallback.url);
    assert_eq!(failing.received.lock().unwrap().len(), 1);

    // Without a fallback, the 5xx is the answer, retryable, its HTML body kept as text.
    let reply = client(&failing.url, None, SK)
        .activate(&activate_request())
        .await
        .unwrap();
    assert_eq!(
        (reply.http_status, reply.disposition, reply.code()),
        (503, Disposition::Retry, "HTTP 503".to_owned())
    );
    assert_eq!(reply.message(), "<html>unavailable</html>");
}

#[tokio::test]
async fn a_silent_marketplace_times_out() {
    let market = marketplace(vec![(0, "")]).await;
    let error = client(&market.url, None, SK)
        .activate(&activate_request())
        .await
        .unwrap_err();
    assert_eq!(error.kind, "timeout");
    assert_eq!(error.disposition(), Disposition::Retry);
}
