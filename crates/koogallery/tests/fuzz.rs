//! The protocol's decoders under arbitrary input: the callback verifier and parser, and the
//! open-API response decoder. Never a panic; always the documented outcome. `LICENSING_FUZZ_CASES`
//! sets the number of cases per property (`scripts/fuzz` runs a million).

use koogallery::callback::{CallbackRequest, InvalidCallback};
use koogallery::classify::{Disposition, classify};
use koogallery::client::Reply;
use koogallery::openapi::{ActivateData, HeartbeatData};
use koogallery::signature::{AccessKey, SignatureParams, Verifier, signed_query};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("LICENSING_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KEY: &str = "fuzzAccessKey0123456789";
const NOW: i64 = 1_795_000_000_000;

/// Callback-like JSON: the real field names with plausible, odd and hostile values, sometimes
/// repeated, in any order; or plain noise.
fn callback_body() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("activity"),
        Just("license"),
        Just("orderId"),
        Just("orderLineId"),
        Just("expireTime"),
        Just("scene"),
        Just("status"),
        Just("testFlag"),
        Just("productId"),
        Just("extra"),
    ];
    let value = prop_oneof![
        Just("\"refreshLicenseCode\"".to_owned()),
        Just("\"updateLicenseCodeStatus\"".to_owned()),
        Just("\"releaseLicenseCode\"".to_owned()),
        Just("\"FREEZE\"".to_owned()),
        Just("\"20270101000000\"".to_owned()),
        Just("\"1\"".to_owned()),
        "\"[A-Z0-9]{0,70}\"",
        "\"(\\\\u[0-9a-f]{4}|[^\"\\\\]){0,20}\"",
        "-?[0-9]{1,25}(\\.[0-9]{1,5})?",
        Just("null".to_owned()),
        Just("[1,{\"a\":[]}]".to_owned()),
        Just("{\"nested\":{\"deep\":true}}".to_owned()),
    ];
    prop_oneof![
        proptest::collection::vec((name, value), 0..10).prop_map(|fields| {
            let inner: Vec<String> = fields
                .into_iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", inner.join(",")).into_bytes()
        }),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_callback_parser_accepts_or_names_the_problem(body in callback_body()) {
        match CallbackRequest::parse(&body) {
            Ok(parsed) => {
                prop_assert!(!parsed.license().is_empty());
                prop_assert!(matches!(
                    parsed.activity(),
                    "refreshLicenseCode" | "updateLicenseCodeStatus" | "releaseLicenseCode"
                ));
            }
            Err(e) => {
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                    prop_assert!(matches!(e, InvalidCallback::NotJson(_)), "{text}");
                }
            }
        }
    }

    #[test]
    fn the_verifier_accepts_exactly_the_signed_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        nonce in "[a-zA-Z0-9_-]{8,40}",
        skew in -120_000i64..120_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let key = AccessKey::new(KEY);
        let verifier = Verifier::new(vec![AccessKey::new(KEY)]);
        let timestamp = (NOW + skew).to_string();
        let query = signed_query(&key, &nonce, &timestamp, &body);
        let params = SignatureParams::from_query(&query).expect("our own query parses");
        let verified = verifier.verify(&params, &body, NOW);
        prop_assert_eq!(verified.is_ok(), skew.abs() <= 60_000, "{:?}", verified);
        if !body.is_empty() {
            let mut altered = body.clone();
            let at = flip.index(altered.len());
            altered[at] ^= 0x01;
            prop_assert!(verifier.verify(&params, &altered, NOW).is_err());
        }
    }

    #[test]
    fn the_verifier_refuses_any_query_it_did_not_sign(
        query in "(signature|timestamp|nonce|x)=[^&]{0,70}(&(signature|timestamp|nonce|x)=[^&]{0,70}){0,4}",
        body in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let verifier = Verifier::new(vec![AccessKey::new(KEY)]);
        if let Ok(params) = SignatureParams::from_query(&query) {
            let refused = verifier.verify(&params, &body, NOW).unwrap_err();
            prop_assert!(!refused.reason().is_empty());
        }
    }

    #[test]
    fn open_api_answers_decode_whatever_their_bytes(
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(403), Just(429), Just(500), Just(502), Just(503), 100u16..600],
        code in prop_oneof![
            Just("92020000"), Just("92020001"), Just("92020003"), Just("92020004"), Just("92020011"),
            Just("APIGW.0301"), Just("APIGW.0308"), Just("95000001"), Just(""), Just("weird"),
        ],
        data in prop_oneof![
            Just("null".to_owned()),
            Just("{}".to_owned()),
            Just("{\"license_code_info\":\"{\\\"expireTime\\\":\\\"20270101000000\\\"}\"}".to_owned()),
            Just("{\"license_code_info\":42}".to_owned()),
            Just("{\"status\":\"ALIVE\",\"expire_time\":\"20270101000000\"}".to_owned()),
            Just("[1,2]".to_owned()),
            "\"[a-zA-Z0-9 ]{0,20}\"",
        ],
        noise in proptest::collection::vec(any::<u8>(), 0..200),
        as_json in any::<bool>(),
    ) {
        let raw = if as_json {
            format!("{{\"error_code\":\"{code}\",\"error_msg\":\"m\",\"data\":{data}}}")
        } else {
            String::from_utf8_lossy(&noise).into_owned()
        };
        let base = url::Url::parse("https://mkt.example.test").unwrap();
        let activate = Reply::<ActivateData>::decode(base.clone(), status, raw.clone());
        let heartbeat = Reply::<HeartbeatData>::decode(base, status, raw.clone());
        let expected_code = activate.body.as_ref().map(|b| b.error_code.clone());
        prop_assert_eq!(activate.disposition, classify(status, expected_code.as_deref()));
        prop_assert_eq!(activate.disposition, heartbeat.disposition);
        prop_assert_eq!(&activate.raw_body, &raw);
        if as_json {
            prop_assert_eq!(expected_code.as_deref(), Some(code));
            if code == "92020000" {
                prop_assert_eq!(activate.disposition, Disposition::Success);
            }
        }
        let _ = (activate.code(), activate.message(), heartbeat.code(), heartbeat.message());
    }
}
