//! The APIG `SDK-HMAC-SHA256` signer against vectors V1–V5 of spec §4.4, and its verifier.

use koogallery::apig::{self, Credentials, SignError, default_headers, sign};
use url::Url;

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[test]
fn v1_signing_guide_example() {
    let url = Url::parse("https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0").unwrap();
    let creds = Credentials::new(
        "QTWAOYTTINDUT2QVKYUC",
        "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
    );
    let signed = sign(
        &creds,
        "GET",
        &url,
        &default_headers(&url, "application/json", "20191115T033655Z", &[]),
        b"",
    )
    .unwrap();
    assert_eq!(
        sha256_hex(&signed.canonical_request),
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    );
    assert_eq!(
        signed.signature,
        "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
    );
    assert_eq!(signed.signed_headers, "content-type;host;x-sdk-date");
}

#[test]
fn v2_go_sdk_get_signing_only_the_date() {
    let url = Url::parse("https://example.huaweicloud.com/path?limit=1").unwrap();
    let creds = Credentials::new("AccessKey", "SecretKey");
    let signed = sign(
        &creds,
        "GET",
        &url,
        &headers(&[("X-Sdk-Date", "20060102T150405Z")]),
        b"",
    )
    .unwrap();
    assert_eq!(
        signed.authorization,
        "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=x-sdk-date, Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"
    );
}

#[test]
fn v3_go_sdk_post_with_a_trailing_newline() {
    let url = Url::parse("https://example.huaweicloud.com/path?key=value").unwrap();
    let creds = Credentials::new("AccessKey", "SecretKey");
    let body = b"{\"Name\":\"test\",\"Id\":1}\n";
    let signed = sign(
        &creds,
        "POST",
        &url,
        &headers(&[("X-Sdk-Date", "20060102T150405Z")]),
        body,
    )
    .unwrap();
    assert_eq!(
        signed.signature,
        "cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"
    );
}

#[test]
fn v4_ruby_gem_with_an_extra_header() {
    let url = Url::parse(
        "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
    )
    .unwrap();
    let creds = Credentials::new("test", "123");
    let all = default_headers(
        &url,
        "application/json",
        "20240317T144237Z",
        &headers(&[("x-stage", "RELEASE")]),
    );
    let signed = sign(&creds, "POST", &url, &all, b"").unwrap();
    assert_eq!(
        signed.signed_headers,
        "content-type;host;x-sdk-date;x-stage"
    );
    assert_eq!(
        signed.signature,
        "77595ad624b6e4e49990b8c4e84bf1c287457fca61069c4e60b9b6765b52053d"
    );
}

#[test]
fn v5_activate_byte_exact() {
    let url = Url::parse(
        "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
    )
    .unwrap();
    let creds = Credentials::new(
        "AKEXAMPLE0000000",
        "SKEXAMPLE0000000000000000000000000000000",
    );
    let body = br#"{"license":"PLXXXXXX"}"#;
    let signed = sign(
        &creds,
        "POST",
        &url,
        &default_headers(&url, "application/json", "20240101T000000Z", &[]),
        body,
    )
    .unwrap();
    assert_eq!(
        signed.canonical_request,
        "POST\n/api/mkp-openapi-public/global/v1/license/activate/\n\ncontent-type:application/json\nhost:mkt.myhuaweicloud.com\nx-sdk-date:20240101T000000Z\n\ncontent-type;host;x-sdk-date\n3e414c5e8434e4efeb16b0ab2d599390f9d7d358f943193cf068fe17b865ace3"
    );
    assert_eq!(
        sha256_hex(&signed.canonical_request),
        "48f54864b35ea96b11b37c09d934635040636bbecbaf4c2b571bae5d0619831b"
    );
    assert_eq!(
        signed.authorization,
        "SDK-HMAC-SHA256 Access=AKEXAMPLE0000000, SignedHeaders=content-type;host;x-sdk-date, Signature=adbbfa36640765237b169d4e0dfd395e312dfdc46230ae159cbda8f2382cb31b"
    );
}

#[test]
fn the_date_must_be_signed() {
    let url = Url::parse("https://example.com/").unwrap();
    assert_eq!(
        sign(
            &Credentials::new("a", "b"),
            "GET",
            &url,
            &headers(&[("Host", "example.com")]),
            b""
        ),
        Err(SignError::MissingDate)
    );
}

#[test]
fn ports_and_odd_paths_are_canonicalised() {
    let url = Url::parse("http://127.0.0.1:8080/a%20b/c~d/").unwrap();
    assert_eq!(apig::host_header(&url), "127.0.0.1:8080");
    assert_eq!(apig::canonical_uri(&url), "/a%20b/c~d/");
    let url = Url::parse("https://h/?b=2&a=3&a=1&c=x%2Fy").unwrap();
    assert_eq!(apig::canonical_query(&url), "a=1&a=3&b=2&c=x%2Fy");
}

fn request_headers(url: &Url, creds: &Credentials, body: &[u8]) -> Vec<(String, String)> {
    let mut all = default_headers(url, "application/json", "20240101T000000Z", &[]);
    let signed = sign(creds, "POST", url, &all, body).unwrap();
    all.push(("Authorization".into(), signed.authorization));
    all
}

#[test]
fn the_verifier_accepts_what_the_signer_signs_and_nothing_altered() {
    let url = Url::parse(
        "https://mkt.myhuaweicloud.com/api/mkp-openapi-public/global/v1/license/activate",
    )
    .unwrap();
    let creds = Credentials::new(
        "AKEXAMPLE0000000",
        "SKEXAMPLE0000000000000000000000000000000",
    );
    let lookup = |ak: &str| (ak == "AKEXAMPLE0000000").then(|| creds.clone());
    let body = br#"{"license":"PLXXXXXX"}"#;
    let good = request_headers(&url, &creds, body);
    let auth = apig::verify(lookup, "POST", &url, &good, body).unwrap();
    assert_eq!(auth.signed_headers, ["content-type", "host", "x-sdk-date"]);

    assert_eq!(
        apig::verify(lookup, "POST", &url, &good, br#"{"license":"PLXXXXXY"}"#),
        Err(SignError::Mismatch)
    );
    assert_eq!(
        apig::verify(lookup, "PUT", &url, &good, body),
        Err(SignError::Mismatch)
    );
    let mut later = good.clone();
    later[2].1 = "20240101T000001Z".into();
    assert_eq!(
        apig::verify(lookup, "POST", &url, &later, body),
        Err(SignError::Mismatch)
    );
    let wrong_sk = request_headers(&url, &Credentials::new("AKEXAMPLE0000000", "other"), body);
    assert_eq!(
        apig::verify(lookup, "POST", &url, &wrong_sk, body),
        Err(SignError::Mismatch)
    );
    let other_ak = request_headers(&url, &Credentials::new("AKOTHER", "x"), body);
    assert_eq!(
        apig::verify(lookup, "POST", &url, &other_ak, body),
        Err(SignError::UnknownAccessKey)
    );
    let no_host: Vec<_> = good.iter().filter(|(n, _)| n != "Host").cloned().collect();
    assert_eq!(
        apig::verify(lookup, "POST", &url, &no_host, body),
        Err(SignError::MissingSignedHeader("host".into()))
    );
    let no_auth = &good[..3];
    assert_eq!(
        apig::verify(lookup, "POST", &url, no_auth, body),
        Err(SignError::MalformedAuthorization)
    );
}
