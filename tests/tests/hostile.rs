//! Hostile input at the public callback URL: whatever an outside caller sends, the writer is
//! never held, nothing is parked, refusals are stored bounded (and expire sooner), and a signed
//! request cannot be rewritten into a new one.

mod support;

use serde_json::json;
use sha2::{Digest, Sha256};
use support::*;

/// Posts raw bytes with a query; the answer's `resultCode`.
async fn post_raw(stack: &Stack, query: &str, body: Vec<u8>) -> String {
    let response = stack
        .http
        .post(format!("{}?{query}", stack.callback_url()))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    code(&answer).to_owned()
}

/// The records of refused requests stored: (license, request bytes, real size, body hash).
async fn refusals(stack: &Stack) -> Vec<(Option<String>, Vec<u8>, i64, Option<String>)> {
    let client = stack.store.client().await.unwrap();
    client
        .query(
            "SELECT license, request, request_size, request_meta->>'body_sha256'
               FROM evidence_exchanges WHERE direction = 'in' AND message_id IS NULL
              ORDER BY request_size",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn dead_letters(stack: &Stack) -> i64 {
    let client = stack.store.client().await.unwrap();
    client
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0)
}

fn unsigned_query() -> String {
    format!(
        "signature={}&timestamp={}&nonce=attackerNonce01",
        "ab".repeat(32),
        now_ms()
    )
}

#[tokio::test]
async fn pathological_unsigned_bodies_never_hold_the_writer_and_are_stored_clipped() {
    let stack = Stack::start(&[]).await;
    let long_license: String = (0..8000)
        .map(|i| char::from(b'A' + (i * 7 % 26) as u8))
        .collect();
    let long = json!({"activity": "refreshLicenseCode", "license": long_license}).to_string();
    let nul = r#"{"activity":"refreshLicenseCode","license":"PL\u0000NUL"}"#.to_owned();
    let pad = format!(
        r#"{{"activity":"releaseLicenseCode","license":"PLPAD1","pad":"{}"}}"#,
        "x".repeat(60 * 1024)
    );
    for body in [&long, &nul, &pad] {
        assert_eq!(
            post_raw(&stack, &unsigned_query(), body.clone().into_bytes()).await,
            "000001"
        );
    }
    // Valid callbacks meanwhile, on many licenses (every lane): answered and applied.
    for n in 0..16 {
        let license = format!("PLH{n:02}");
        let answer = stack
            .callback(&renew(
                &license,
                &format!("CSH{n}"),
                "20301231235959",
                false,
            ))
            .await;
        assert_eq!(code(&answer), "000000", "{license}: {answer}");
        assert_eq!(
            stack.event_types(&format!("license-{license}")).await,
            ["registered", "renewed"],
            "{license}"
        );
    }
    let stored = eventually("the three refusals stored", 30, || async {
        let stored = refusals(&stack).await;
        (stored.len() == 3).then_some(stored)
    })
    .await;
    // Ordered by real size: the NUL one, the long license, the pad.
    let (license, request, size, hash) = &stored[0];
    assert_eq!(license, &None, "not a license code");
    assert_eq!(request, nul.as_bytes(), "the body kept as it came");
    assert_eq!(*size, nul.len() as i64);
    assert_eq!(
        hash.as_deref(),
        Some(hex::encode(Sha256::digest(&nul)).as_str())
    );
    let (license, request, ..) = &stored[1];
    assert_eq!(license, &None, "8,000 characters are no license code");
    assert_eq!(request.len(), 4096, "clipped to the default");
    let (license, request, size, hash) = &stored[2];
    assert_eq!(
        license, &None,
        "a clipped body is no JSON to read a license from"
    );
    assert_eq!(request.as_slice(), &pad.as_bytes()[..4096]);
    assert_eq!(*size, pad.len() as i64, "the real size");
    assert_eq!(
        hash.as_deref(),
        Some(hex::encode(Sha256::digest(&pad)).as_str()),
        "the hash of the whole body"
    );
    assert_eq!(dead_letters(&stack).await, 0, "nothing parked");
    // And the writer still moves.
    let answer = stack
        .callback(&renew("PLH99", "CSH99", "20301231235959", false))
        .await;
    assert_eq!(code(&answer), "000000");
}

#[tokio::test]
async fn a_signed_request_rewritten_at_the_nonce_timestamp_boundary_is_refused() {
    let stack = Stack::start(&[]).await;
    let body = status("PLB1", "FREEZE");
    let timestamp = now_ms().to_string();
    let nonce = "capturedNonce0";
    let signature = koogallery::signature::sign(
        &koogallery::signature::AccessKey::new(KEY),
        nonce,
        &timestamp,
        body.as_bytes(),
    );
    let query = |nonce: &str, timestamp: &str| {
        format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
    };
    assert_eq!(
        post_raw(&stack, &query(nonce, &timestamp), body.clone().into_bytes()).await,
        "000000"
    );
    assert_eq!(
        post_raw(
            &stack,
            &query("capturedNonce", &format!("0{timestamp}")),
            body.clone().into_bytes()
        )
        .await,
        "000001",
        "the same signature under a moved boundary"
    );
    let events = stack.event_types("license-PLB1").await;
    assert_eq!(
        events.iter().filter(|t| *t == "frozen").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn refusals_stop_at_the_daily_ceiling_and_expire_after_their_retention() {
    let clock = TestClock::new();
    let setting = clock.setting();
    let mut stack = Stack::start(&[("LICENSING_EVIDENCE_REFUSED_MAX_BYTES_PER_DAY", "6000")]).await;
    stack.start_projector_with(
        "http://127.0.0.1:9",
        &[("LICENSING_CLOCK_OFFSET_FILE", setting.as_str())],
    );
    let genuine = stack
        .callback(&renew("PLC1", "CSC1", "20301231235959", false))
        .await;
    assert_eq!(code(&genuine), "000000");
    let pad = format!(r#"{{"license":"PLC2","pad":"{}"}}"#, "y".repeat(8000));
    for _ in 0..5 {
        assert_eq!(
            post_raw(&stack, &unsigned_query(), pad.clone().into_bytes()).await,
            "000001"
        );
    }
    let today = time::OffsetDateTime::now_utc().date();
    let (bytes, dropped) = eventually("every refusal stored or dropped", 30, || async {
        let day = stack.store.refusal_day(today).await.unwrap();
        let stored = refusals(&stack).await.len() as i64;
        (stored + day.1 == 5).then_some(day)
    })
    .await;
    assert!(bytes <= 6000, "within the ceiling: {bytes}");
    assert!(bytes > 4096, "one record stored: {bytes}");
    assert_eq!(dropped, 4, "the rest counted");
    assert_eq!(refusals(&stack).await.len(), 1);

    // 31 days on: the refusal is gone, the genuine exchange is kept.
    clock.set(31 * 86_400);
    eventually("the refusal expired", 30, || async {
        refusals(&stack).await.is_empty().then_some(())
    })
    .await;
    let client = stack.store.client().await.unwrap();
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM evidence_exchanges WHERE license = 'PLC1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn a_command_failing_unavailable_while_others_commit_is_parked_not_retried_for_ever() {
    let mut stack = Stack::start(&[("LICENSING_PROCESSOR_BATCH", "1")]).await;
    // The processor's sessions give up on a lock after 300 ms: a held lock is "unavailable".
    let url = format!("{}?options=-c%20lock_timeout%3D300", stack.db.url);
    stack.processor = None;
    stack
        .env
        .retain(|(name, _)| name != "LICENSING_DATABASE_URL");
    stack.env.push(("LICENSING_DATABASE_URL".to_owned(), url));
    stack.start_processor();
    // Another session holds version 1 of PLSTUCK's stream, uncommitted: every append to it
    // waits for that lock, and times out.
    let mut holder = stack.store.client().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(HOLD_FIRST_VERSION, &[&"license-PLSTUCK"])
        .await
        .unwrap();
    let stuck = renew("PLSTUCK", "CSSTUCK", "20301231235959", false);
    // Meanwhile other licenses' callbacks commit, from six senders (one held behind PLSTUCK's
    // lane waits for its answer; the others go on).
    let sender = |s: usize| {
        let stack = &stack;
        async move {
            for n in 0..200 {
                let license = format!("PLOK{s}x{n:03}");
                let answer = stack
                    .callback(&renew(&license, "CSOK", "20301231235959", false))
                    .await;
                assert!(
                    ["000000", "000004"].contains(&code(&answer)),
                    "{license}: {answer}"
                );
            }
        }
    };
    let others = futures_util::future::join_all((0..6).map(sender));
    let parked = async {
        stack
            .wait_dead_letter(|d| d.letter.license.as_deref() == Some("PLSTUCK"))
            .await
    };
    let (answer, parked) = tokio::join!(stack.callback(&stuck), async {
        tokio::select! {
            parked = parked => parked,
            _ = others => panic!("1,200 other callbacks and PLSTUCK still not parked"),
        }
    });
    assert_eq!(code(&answer), "000004", "not decided in time: {answer}");
    assert!(
        parked.letter.reason.starts_with("unavailable_alone"),
        "{}",
        parked.letter.reason
    );
    tx.rollback().await.unwrap();
    // The writer moves: PLSTUCK applies now, and others still do.
    let answer = stack
        .callback(&renew("PLSTUCK", "CSSTUCK2", "20311231235959", false))
        .await;
    assert_eq!(code(&answer), "000000", "{answer}");
    let answer = stack
        .callback(&renew("PLOKLAST", "CSOK", "20301231235959", false))
        .await;
    assert_eq!(code(&answer), "000000", "{answer}");
}

#[tokio::test]
async fn the_daily_ceiling_holds_across_two_ingresses_and_two_processors() {
    const CEILING: i64 = 20_000;
    let ceiling = CEILING.to_string();
    let stack = Stack::start(&[("LICENSING_EVIDENCE_REFUSED_MAX_BYTES_PER_DAY", &ceiling)]).await;
    let _second_processor = Service::start("licensing-processor", &stack.env);
    let second_ingress = Service::start("licensing-ingress", &stack.env);
    let urls = [
        stack.callback_url(),
        format!(
            "http://{}/koogallery/license",
            second_ingress.ready["public"].as_str().unwrap()
        ),
    ];
    // Forty refusals at once, half through each ingress; each record is clipped to about 4 KiB,
    // so the ceiling admits four or so, whichever processor writes them.
    let pad = format!(r#"{{"license":"PLD2","pad":"{}"}}"#, "z".repeat(8000));
    let sent = futures_util::future::join_all((0..40).map(|n| {
        let (http, url, body) = (stack.http.clone(), urls[n % 2].clone(), pad.clone());
        async move {
            let answer: serde_json::Value = http
                .post(format!("{url}?{}", unsigned_query()))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            code(&answer).to_owned()
        }
    }))
    .await;
    assert!(sent.iter().all(|c| c == "000001"), "{sent:?}");
    let today = time::OffsetDateTime::now_utc().date();
    let (bytes, dropped) = eventually("every refusal stored or dropped", 30, || async {
        let day = stack.store.refusal_day(today).await.unwrap();
        let stored = refusals(&stack).await.len() as i64;
        (stored + day.1 == 40).then_some(day)
    })
    .await;
    let stored = refusals(&stack).await;
    let real: i64 = stored
        .iter()
        .map(|(_, request, _, _)| request.len() as i64)
        .sum();
    assert!(
        bytes <= CEILING,
        "the day's count stays within the ceiling: {bytes}"
    );
    assert!(real <= CEILING, "so do the bytes stored: {real}");
    assert!(
        !stored.is_empty() && dropped >= 30,
        "{} stored, {dropped} dropped",
        stored.len()
    );
    assert_eq!(dead_letters(&stack).await, 0);
}
