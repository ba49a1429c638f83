//! Callback signatures: the worked examples of spec §3.4, and properties of sign/verify.

use koogallery::signature::{
    AccessKey, SignatureParams, Verifier, VerifyError, body_digest, sign, signed_query,
};
use proptest::prelude::*;

const KEY: &str = "testAccessKey0123456789";
const NONCE: &str = "RLLUammMSInlrNWb";
const TIMESTAMP: &str = "1666677988730";
const NOW: i64 = 1_666_677_988_730;

/// (body, bodyDigest, signature) from spec §3.4.
const EXAMPLES: [(&str, &str, &str); 3] = [
    (
        r#"{"activity":"refreshLicenseCode","expireTime":"20230523201932","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","productId":"OFFI000000000000000001","scene":"RENEWAL","testFlag":"1"}"#,
        "73c57f56ae7f0b74d19cf4400feb7addb938bedb5f332b87c7b670335dc59be6",
        "d7cb2c5389d8ce9a8545b3ae4ab3e56028942883f464d56690585d980b5547a4",
    ),
    (
        r#"{"activity":"updateLicenseCodeStatus","license":"PL0000000001","status":"FREEZE","testFlag":"1"}"#,
        "ee55a93c45f7f9a107a04a11a19bbedd098d03bb0e68ccff9056d639f1eb6f62",
        "f571acff6b91c9424f55050e4a24b3fbaf2048762d66a306ad97ee0c02e6e164",
    ),
    (
        r#"{"activity":"releaseLicenseCode","license":"PL0000000001","orderId":"CS2305231000ABCDE","orderLineId":"CS2305231000ABCDE-000001","testFlag":"1"}"#,
        "82d1734ee5c8ce444df8be9a06d689882641d3913fe8a5b1a343e4a4470c1b31",
        "7db4008f949e0fa98bb4313e207be38c965cc861758c876469e26699473d4b12",
    ),
];

fn key() -> AccessKey {
    AccessKey::new(KEY)
}

fn params(signature: &str) -> SignatureParams {
    SignatureParams {
        signature: signature.to_owned(),
        timestamp: TIMESTAMP.to_owned(),
        nonce: NONCE.to_owned(),
    }
}

#[test]
fn the_worked_examples_of_the_spec() {
    for (body, digest, signature) in EXAMPLES {
        assert_eq!(body_digest(&key(), body.as_bytes()), digest);
        assert_eq!(sign(&key(), NONCE, TIMESTAMP, body.as_bytes()), signature);
        let verified = Verifier::new(vec![key()])
            .verify(&params(signature), body.as_bytes(), NOW)
            .expect("the example verifies");
        assert_eq!((verified.key_index, verified.nonce.as_str()), (0, NONCE));
    }
}

#[test]
fn a_plain_sha256_inner_step_is_not_accepted() {
    // Spec §3.4: what a wrong implementation (SHA-256 instead of HMAC inside) would produce.
    let wrong = "1af8dd13df2649c1cf609039d2af5607dfeef4abc97e688d76b25a363fb46ffc";
    let result = Verifier::new(vec![key()]).verify(&params(wrong), EXAMPLES[0].0.as_bytes(), NOW);
    assert_eq!(result, Err(VerifyError::Mismatch));
}

#[test]
fn upper_case_signatures_verify_and_are_reported_in_one_spelling() {
    let (body, _, signature) = EXAMPLES[1];
    let upper = signature.to_ascii_uppercase();
    let verifier = Verifier::new(vec![key()]);
    let from_upper = verifier
        .verify(&params(&upper), body.as_bytes(), NOW)
        .unwrap();
    let from_lower = verifier
        .verify(&params(signature), body.as_bytes(), NOW)
        .unwrap();
    // The replay key is the same however the hex was spelled.
    assert_eq!(from_upper.signature, signature.to_ascii_lowercase());
    assert_eq!(from_upper.signature, from_lower.signature);
}

#[test]
fn query_parsing_names_each_problem() {
    let q = "signature=d7cb&timestamp=1666677988730&nonce=RLLUammMSInlrNWb&contentType=application%2Fjson";
    let parsed = SignatureParams::from_query(q).unwrap();
    assert_eq!(
        (
            parsed.signature.as_str(),
            parsed.timestamp.as_str(),
            parsed.nonce.as_str()
        ),
        ("d7cb", TIMESTAMP, NONCE)
    );
    assert_eq!(
        SignatureParams::from_query("timestamp=1&nonce=n"),
        Err(VerifyError::MissingParameter("signature"))
    );
    assert_eq!(
        SignatureParams::from_query("signature=a&nonce=n"),
        Err(VerifyError::MissingParameter("timestamp"))
    );
    assert_eq!(
        SignatureParams::from_query("signature=a&timestamp=1&nonce="),
        Err(VerifyError::MissingParameter("nonce"))
    );
    assert_eq!(
        SignatureParams::from_query("signature=a&signature=b&timestamp=1&nonce=n"),
        Err(VerifyError::DuplicateParameter("signature"))
    );
    assert_eq!(
        signed_query(&key(), NONCE, TIMESTAMP, EXAMPLES[0].0.as_bytes()),
        format!(
            "signature={}&timestamp={TIMESTAMP}&nonce={NONCE}",
            EXAMPLES[0].2
        )
    );
}

#[test]
fn timestamps_are_checked_before_the_signature() {
    let verifier = Verifier::new(vec![key()]);
    let body = EXAMPLES[0].0.as_bytes();
    let mut p = params("00");
    p.timestamp = "16666779887x0".into();
    assert_eq!(
        verifier.verify(&p, body, NOW),
        Err(VerifyError::MalformedTimestamp("16666779887x0".into()))
    );
    p.timestamp = "-1666677988730".into();
    assert!(matches!(
        verifier.verify(&p, body, NOW),
        Err(VerifyError::MalformedTimestamp(_))
    ));
    let stale = params(EXAMPLES[0].2);
    assert_eq!(
        verifier.verify(&stale, body, NOW + 60_001),
        Err(VerifyError::OutsideWindow {
            skew_ms: -60_001,
            window_ms: 60_000
        })
    );
    assert_eq!(
        verifier.verify(&stale, body, NOW - 60_001),
        Err(VerifyError::OutsideWindow {
            skew_ms: 60_001,
            window_ms: 60_000
        })
    );
    assert!(verifier.verify(&stale, body, NOW + 60_000).is_ok());
    assert!(verifier.verify(&stale, body, NOW - 60_000).is_ok());
    assert_eq!(
        verifier.verify(&params("abc"), body, NOW),
        Err(VerifyError::MalformedSignature)
    );
    assert_eq!(
        verifier.verify(&params(&"zz".repeat(32)), body, NOW),
        Err(VerifyError::MalformedSignature)
    );
}

#[test]
fn a_seconds_timestamp_is_scaled_but_signed_as_sent() {
    let body = EXAMPLES[1].0.as_bytes();
    let signature = sign(&key(), NONCE, "1666677988", body);
    let p = SignatureParams {
        signature,
        timestamp: "1666677988".into(),
        nonce: NONCE.into(),
    };
    let verified = Verifier::new(vec![key()]).verify(&p, body, NOW).unwrap();
    assert_eq!(verified.timestamp_ms, 1_666_677_988_000);
}

#[test]
fn the_previous_key_still_verifies_during_rotation() {
    let (body, _, signature) = EXAMPLES[2];
    let verifier = Verifier::new(vec![AccessKey::new("newKey"), key()]);
    assert_eq!(
        verifier
            .verify(&params(signature), body.as_bytes(), NOW)
            .unwrap()
            .key_index,
        1
    );
    let only_new = Verifier::new(vec![AccessKey::new("newKey")]);
    assert_eq!(
        only_new.verify(&params(signature), body.as_bytes(), NOW),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn a_custom_window_is_honoured() {
    let (body, _, signature) = EXAMPLES[0];
    let verifier = Verifier::with_window(vec![key()], 300_000);
    assert!(
        verifier
            .verify(&params(signature), body.as_bytes(), NOW + 299_000)
            .is_ok()
    );
}

#[test]
fn keys_never_appear_in_debug_output() {
    let verifier = Verifier::new(vec![key()]);
    assert!(!format!("{verifier:?}").contains(KEY));
}

fn arb_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,32}"
}

proptest! {
    #[test]
    fn sign_then_verify_round_trips(
        body in prop::collection::vec(any::<u8>(), 0..512),
        key in arb_text(),
        nonce in "[A-Za-z0-9]{8,32}",
        timestamp in 1_000_000_000_000i64..9_999_999_999_999,
        skew in -60_000i64..=60_000,
    ) {
        let key = AccessKey::new(key);
        let ts = timestamp.to_string();
        let signature = sign(&key, &nonce, &ts, &body);
        let parsed = SignatureParams::from_query(&signed_query(&key, &nonce, &ts, &body)).unwrap();
        prop_assert_eq!(&parsed.signature, &signature);
        let verified = Verifier::new(vec![key]).verify(&parsed, &body, timestamp + skew);
        prop_assert!(verified.is_ok(), "{:?}", verified);
    }

    #[test]
    fn any_change_fails(
        body in prop::collection::vec(any::<u8>(), 1..256),
        key in arb_text(),
        nonce in "[A-Za-z0-9]{8,32}",
        timestamp in 1_000_000_000_000i64..9_999_999_999_999,
        which in 0usize..5,
        position in any::<prop::sample::Index>(),
    ) {
        let ts = timestamp.to_string();
        let signature = sign(&AccessKey::new(key.clone()), &nonce, &ts, &body);
        let mut p = SignatureParams { signature, timestamp: ts, nonce };
        let mut body = body;
        let mut key = key;
        match which {
            0 => { let i = position.index(body.len()); body[i] ^= 0x01; }
            1 => p.nonce.push('x'),
            2 => p.timestamp = (timestamp + 1).to_string(),
            3 => {
                let i = position.index(64);
                let c = p.signature.as_bytes()[i];
                let flipped = if c == b'0' { '1' } else { '0' };
                p.signature.replace_range(i..=i, &flipped.to_string());
            }
            _ => key.push('x'),
        }
        let result = Verifier::new(vec![AccessKey::new(key)]).verify(&p, &body, timestamp);
        prop_assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn any_of_several_keys_verifies(keys in prop::collection::vec(arb_text(), 1..5), pick in any::<prop::sample::Index>()) {
        let index = pick.index(keys.len());
        let body = b"{}";
        let signature = sign(&AccessKey::new(keys[index].clone()), NONCE, TIMESTAMP, body);
        let verifier = Verifier::new(keys.iter().cloned().map(AccessKey::new).collect());
        let verified = verifier.verify(&params(&signature), body, NOW).unwrap();
        prop_assert_eq!(&keys[verified.key_index], &keys[index]);
    }
}

/// Every way of cutting `nonce + timestamp` into a nonce and a timestamp other than the one
/// signed.
fn other_cuts(nonce: &str, timestamp: &str) -> Vec<(String, String)> {
    let joined = format!("{nonce}{timestamp}");
    (1..joined.len())
        .filter(|&cut| cut != nonce.len())
        .map(|cut| (joined[..cut].to_owned(), joined[cut..].to_owned()))
        .collect()
}

#[test]
fn a_captured_request_rewritten_at_the_nonce_timestamp_boundary_is_refused() {
    let verifier = Verifier::new(vec![key()]);
    let body = EXAMPLES[1].0.as_bytes();
    // A nonce ending in 0: moving that 0 to the front of the timestamp signs the same string.
    let nonce = "RLLUammMSInlrNW0";
    let signature = sign(&key(), nonce, TIMESTAMP, body);
    let signed = |nonce: &str, timestamp: &str| SignatureParams {
        signature: signature.clone(),
        timestamp: timestamp.to_owned(),
        nonce: nonce.to_owned(),
    };
    assert!(
        verifier
            .verify(&signed(nonce, TIMESTAMP), body, NOW)
            .is_ok()
    );
    let moved = format!("0{TIMESTAMP}");
    assert_eq!(
        verifier.verify(&signed("RLLUammMSInlrNW", &moved), body, NOW),
        Err(VerifyError::MalformedTimestamp(moved.clone()))
    );
    assert_eq!(
        VerifyError::MalformedTimestamp(moved).reason(),
        "malformed_timestamp"
    );
    for bad in [
        "short",
        "has space in it",
        "nonce/with/slash",
        &"n".repeat(129),
    ] {
        let refused = verifier.verify(&signed(bad, TIMESTAMP), body, NOW);
        assert_eq!(refused, Err(VerifyError::MalformedNonce), "{bad:?}");
    }
}

proptest! {
    /// No two distinct accepted queries share a signature: however `nonce + timestamp` is cut
    /// again, the other cut is refused.
    #[test]
    fn no_other_cut_of_a_signed_string_is_accepted(
        nonce in "[A-Za-z0-9_-]{8,40}",
        skew in -59_000i64..59_000,
        seconds in any::<bool>(),
    ) {
        let verifier = Verifier::new(vec![key()]);
        let body = EXAMPLES[0].0.as_bytes();
        let at = NOW + skew;
        let timestamp = if seconds { (at / 1000).to_string() } else { at.to_string() };
        let signature = sign(&key(), &nonce, &timestamp, body);
        let accepted = |nonce: &str, timestamp: &str| {
            verifier
                .verify(
                    &SignatureParams {
                        signature: signature.clone(),
                        timestamp: timestamp.to_owned(),
                        nonce: nonce.to_owned(),
                    },
                    body,
                    NOW,
                )
                .is_ok()
        };
        prop_assert!(accepted(&nonce, &timestamp));
        for (other_nonce, other_timestamp) in other_cuts(&nonce, &timestamp) {
            prop_assert!(
                !accepted(&other_nonce, &other_timestamp),
                "{other_nonce} / {other_timestamp}"
            );
        }
    }
}
