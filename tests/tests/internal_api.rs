//! The internal API: bearer tokens, activation requests, usage reports, idempotency keys.

mod support;

use serde_json::{Value, json};
use support::*;

async fn post(
    stack: &Stack,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Value,
) -> (u16, Value, Option<String>) {
    let mut request = stack.http.post(stack.internal_url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        location,
    )
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let stack = Stack::start(&[]).await;
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let (status, body, _) = post(
            &stack,
            "/v1/licenses/PL200/activation",
            token,
            None,
            json!({}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthorized")),
            "{token:?}"
        );
    }
    assert_eq!(stack.event_count().await, 0);
}

#[tokio::test]
async fn an_activation_request_is_recorded_and_points_to_the_license() {
    let stack = Stack::start(&[]).await;
    let (status, body, location) = post(
        &stack,
        "/v1/licenses/PL201/activation",
        Some(TOKEN),
        None,
        json!({"real_effect_time": "20261128093000"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(location.as_deref(), Some("/v1/licenses/PL201"));
    assert_eq!(body["license"]["status"], "activation_pending");
    assert_eq!(
        stack.event_types("license-PL201").await,
        ["registered", "activation_requested"]
    );
    let requested = &stack.events("license-PL201").await[1];
    assert_eq!(
        requested.payload["real_effect_time_ms"],
        1_795_858_200_000i64
    );
    assert_eq!(requested.metadata.source.as_deref(), Some("internal-api"));

    // Asking again changes nothing.
    let (status, _, _) = post(
        &stack,
        "/v1/licenses/PL201/activation",
        Some(TOKEN),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(stack.event_count().await, 2);
}

#[tokio::test]
async fn bad_requests_are_named() {
    let stack = Stack::start(&[]).await;
    let cases = [
        (
            "/v1/licenses/PL%20202/activation",
            json!({}),
            "invalid_license",
        ),
        (
            "/v1/licenses/PL202/activation",
            json!({"real_effect_time": "2026-11-28"}),
            "invalid_body",
        ),
        (
            "/v1/licenses/PL202/activation",
            json!({"unexpected": 1}),
            "invalid_body",
        ),
        (
            "/v1/licenses/PL202/usage",
            json!({"ip": "10.0.0.1"}),
            "invalid_body",
        ),
        (
            "/v1/licenses/PL202/usage",
            json!({"account": "alice", "at": "yesterday"}),
            "invalid_body",
        ),
        (
            "/v1/licenses/PL202/usage",
            json!({"account": ""}),
            "invalid_body",
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer, _) = post(&stack, path, Some(TOKEN), None, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(expected)),
            "{path}: {answer}"
        );
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(stack.event_count().await, 0);
}

#[tokio::test]
async fn usage_needs_an_activated_license() {
    let stack = Stack::start(&[]).await;
    let (status, body, _) = post(
        &stack,
        "/v1/licenses/PL203/usage",
        Some(TOKEN),
        None,
        json!({"account": "alice"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_license")),
        "{body}"
    );
    post(
        &stack,
        "/v1/licenses/PL203/activation",
        Some(TOKEN),
        None,
        json!({}),
    )
    .await;
    let (status, body, _) = post(
        &stack,
        "/v1/licenses/PL203/usage",
        Some(TOKEN),
        None,
        json!({"account": "alice"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_activated")),
        "{body}"
    );
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer() {
    let stack = Stack::start(&[]).await;
    let first = post(
        &stack,
        "/v1/licenses/PL204/activation",
        Some(TOKEN),
        Some("order-77"),
        json!({}),
    )
    .await;
    // Meanwhile the license moved on (frozen by the marketplace).
    assert_eq!(
        code(&stack.callback(&status("PL204", "FREEZE")).await),
        "000000"
    );
    let repeat = post(
        &stack,
        "/v1/licenses/PL204/activation",
        Some(TOKEN),
        Some("order-77"),
        json!({}),
    )
    .await;
    assert_eq!(repeat.0, first.0);
    assert_eq!(repeat.1, first.1, "the stored answer, not a new one");
    assert_eq!(
        stack.event_types("license-PL204").await,
        [
            "registered",
            "activation_requested",
            "frozen",
            "access_changed"
        ]
    );
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_and_the_scheme_in_any_case() {
    let stack = Stack::start(&[]).await;
    // No token, a body that is not even JSON: refused for the token, not the body.
    let response = stack
        .http
        .post(stack.internal_url("/v1/licenses/PL230/usage"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // `bearer` in lower case is the same scheme.
    let response = stack
        .http
        .post(stack.internal_url("/v1/licenses/PL230/activation"))
        .header("Authorization", format!("bearer {TOKEN}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

#[tokio::test]
async fn usage_far_from_now_is_refused() {
    let stack = Stack::start(&[]).await;
    let at = |offset: time::Duration| {
        (time::OffsetDateTime::now_utc() + offset)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    for (offset, expected) in [
        (time::Duration::minutes(10), 400),
        (time::Duration::hours(-37), 400),
    ] {
        let (status, body, _) = post(
            &stack,
            "/v1/licenses/PL231/usage",
            Some(TOKEN),
            None,
            json!({"account": "erin", "at": at(offset)}),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (expected, Some("invalid_usage_time")),
            "{offset}"
        );
    }
    // Within the window, the license's state decides (not activated here).
    let (status, body, _) = post(
        &stack,
        "/v1/licenses/PL231/usage",
        Some(TOKEN),
        None,
        json!({"account": "erin", "at": at(time::Duration::hours(-30))}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_license"))
    );
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_is_refused() {
    let stack = Stack::start(&[]).await;
    let path = "/v1/licenses/PL232/activation";
    let first = post(&stack, path, Some(TOKEN), Some("k-232"), json!({})).await;
    assert_eq!(first.0, 202, "{:?}", first.1);
    let again = post(&stack, path, Some(TOKEN), Some("k-232"), json!({})).await;
    assert_eq!(again.0, 202, "the same request again gets the first answer");
    let other = post(
        &stack,
        path,
        Some(TOKEN),
        Some("k-232"),
        json!({"real_effect_time": "20260101000000"}),
    )
    .await;
    assert_eq!(
        (other.0, other.1["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{:?}",
        other.1
    );
    assert_eq!(
        stack.event_types("license-PL232").await,
        ["registered", "activation_requested"]
    );
}

#[tokio::test]
async fn the_internal_api_answers_as_its_openapi_document_says() {
    let stack = Stack::start(&[]).await;
    // Only the internal API's operations (and the shared ops routes) live on this listener.
    // `positive_data_acceptance` is left out: a schema cannot say "within the last 36 hours" for
    // a usage report's `at`, nor "a real calendar date" for `real_effect_time`, so valid-looking
    // values are rightly refused with 400 (`invalid_usage_time`, `invalid_body`).
    schemathesis(
        &stack.internal_url(""),
        &[
            "--include-path-regex",
            "/(activation|usage|drift/resolve)$|^/(healthz|readyz|metrics)$",
            "--exclude-checks",
            "positive_data_acceptance",
        ],
    );
}

#[tokio::test]
async fn each_listener_refuses_tokens_without_its_scope_and_the_console_needs_its_own_secret() {
    const REPORTS: &str = "reports-token-0123456789abc";
    const AUTOMATION: &str = "automation-token-0123456789";
    let tokens = format!("ops:{TOKEN},reports:{REPORTS}:query,automation:{AUTOMATION}:internal");
    let mut stack = Stack::start(&[("LICENSING_API_TOKENS", &tokens)]).await;
    let sim = Simulator::start();
    stack.start_projector(&sim.url);

    // The internal API: a query-only token is refused with 403 naming its scopes; the others pass.
    let (status, body, _) = post(
        &stack,
        "/v1/licenses/PL300/activation",
        Some(REPORTS),
        None,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("reports") && message.contains("query"),
        "{message}"
    );
    assert!(
        !message.contains(REPORTS),
        "the token itself is never echoed: {message}"
    );
    for token in [TOKEN, AUTOMATION] {
        let (status, body, _) = post(
            &stack,
            "/v1/licenses/PL300/usage",
            Some(token),
            None,
            json!({"account": "u1"}),
        )
        .await;
        // Authorised: what follows is about the license (not known here), not the token.
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("unknown_license")),
            "{token}"
        );
    }

    // The query API: an internal-only token is refused; a query token reads.
    let read = |token: &'static str| {
        let http = stack.http.clone();
        let url = stack.query_url("/v1/licenses/PL300");
        async move {
            let answer = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = read(AUTOMATION).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _) = read(REPORTS).await;
    assert_ne!(status, 401);
    assert_ne!(status, 403);

    // The console: neither scoped token may sign in; the unscoped one may.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let query = stack.query_url("");
    for (token, accepted) in [(REPORTS, false), (AUTOMATION, false), (TOKEN, true)] {
        let signed_in = console_sign_in(&query, token).await;
        let session = set_cookie(&signed_in, "licensing_console");
        assert_eq!(
            session.is_some(),
            accepted,
            "{token}: {}",
            signed_in.status()
        );
        if let Some((cookie, _)) = session {
            assert!(
                !cookie.contains(TOKEN),
                "the cookie holds no token: {cookie}"
            );
        }
    }

    // A projector without LICENSING_CONSOLE_SECRET: the console is off and says why.
    stack.projector = None;
    stack.start_projector_with(&sim.url, &[("LICENSING_CONSOLE_SECRET", "")]);
    let page = http
        .get(stack.query_url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 503);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("LICENSING_CONSOLE_SECRET")
    );
    let projector = stack.projector.as_ref().unwrap();
    assert!(
        !projector
            .logged("LICENSING_CONSOLE_SECRET is not set")
            .is_empty(),
        "the projector warns at start"
    );
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_the_token_that_sent_it() {
    const OTHER: &str = "other-team-token-0123456789";
    let tokens = format!("ops:{TOKEN},other:{OTHER}");
    let stack = Stack::start(&[("LICENSING_API_TOKENS", &tokens)]).await;
    let first = post(
        &stack,
        "/v1/licenses/PL310/activation",
        Some(TOKEN),
        Some("shared-key"),
        json!({}),
    )
    .await;
    assert!(first.0 < 300, "{first:?}");
    assert_eq!(
        code(&stack.callback(&status("PL310", "FREEZE")).await),
        "000000"
    );
    // The same key from another token is another request: decided now (the license as it is,
    // frozen), never the first token's stored answer.
    let theirs = post(
        &stack,
        "/v1/licenses/PL310/activation",
        Some(OTHER),
        Some("shared-key"),
        json!({}),
    )
    .await;
    assert_eq!(theirs.1["license"]["status"], "frozen", "{theirs:?}");
    assert_ne!(theirs.1, first.1, "not the first token's answer");
    // The first token's repeat still gets its own first answer.
    let repeat = post(
        &stack,
        "/v1/licenses/PL310/activation",
        Some(TOKEN),
        Some("shared-key"),
        json!({}),
    )
    .await;
    assert_eq!((repeat.0, &repeat.1), (first.0, &first.1));
}
