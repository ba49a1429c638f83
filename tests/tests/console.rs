//! The operator console end to end: the real services, PostgreSQL, RabbitMQ and the simulator;
//! its security over plain HTTP, and an operator's work in headless Chromium (screenshots under
//! `target/console-screenshots/`).

mod support;

use support::webdriver::Browser;
use support::*;

const OPERATOR: &str = "oncall";

/// A stack whose projector serves the console, with the ingress and processor as peers, trusting
/// 127.0.0.1 as a proxy and on a settable clock.
async fn console_stack(sim: &Simulator, clock: &TestClock) -> Stack {
    let tokens = format!("{OPERATOR}:{TOKEN}");
    let mut stack = Stack::start(&[
        ("LICENSING_API_TOKENS", &tokens),
        ("LICENSING_REPLY_DEADLINE_MS", "500"),
    ])
    .await;
    let peers = format!(
        "ingress={},processor=http://{}/readyz",
        stack.internal_url("/readyz"),
        stack.processor.as_ref().unwrap().ready["ops"]
            .as_str()
            .unwrap()
    );
    stack.start_projector_with(
        &sim.url,
        &[
            ("LICENSING_CONSOLE_PEERS", &peers),
            ("LICENSING_TRUSTED_PROXIES", "127.0.0.1"),
            ("LICENSING_CLOCK_OFFSET_FILE", &clock.setting()),
        ],
    );
    stack
}

/// An HTTP client that does not follow redirects (the test reads them).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in from `client_ip` (as the trusted proxy reports it); the sign-in answer.
async fn sign_in(stack: &Stack, token: &str, client_ip: &str, https: bool) -> reqwest::Response {
    let http = client();
    let form = http
        .get(stack.query_url("/console/sign-in"))
        .send()
        .await
        .unwrap();
    let (nonce_cookie, _) = set_cookie(&form, "licensing_console_sign_in").expect("a form cookie");
    let csrf = csrf_in(&form.text().await.unwrap());
    http.post(stack.query_url("/console/sign-in"))
        .header("Cookie", nonce_cookie)
        .header("X-Forwarded-For", format!("203.0.113.1, {client_ip}"))
        .header("X-Forwarded-Proto", if https { "https" } else { "http" })
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("token", token),
            ("csrf", &csrf),
            ("next", "/console/"),
        ]))
        .send()
        .await
        .unwrap()
}

async fn page(stack: &Stack, path: &str, cookie: &str) -> (u16, String, String) {
    let response = client()
        .get(stack.query_url(path))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, location, response.text().await.unwrap())
}

#[tokio::test]
async fn the_console_lets_in_only_a_signed_unexpired_session_and_only_its_own_forms() {
    let sim = Simulator::start();
    let clock = TestClock::new();
    let mut stack = console_stack(&sim, &clock).await;
    let hostile = "PL<script>document.title='pwned'</script>";
    assert_eq!(
        code(
            &stack
                .callback(&renew(hostile, "CS<b>1</b>", "20291231235959", false))
                .await
        ),
        "000000"
    );

    pages_without_a_session_go_to_sign_in(&stack).await;
    wrong_tokens_are_refused_then_held_back(&stack).await;
    let cookie = a_right_token_gets_a_cookie_scripts_cannot_read(&stack).await;
    let overview = the_overview_counts_callbacks_and_names_the_shard_holder(&stack, &cookie).await;
    a_form_needs_the_session_s_csrf_token(&stack, &cookie, &overview).await;
    a_cookie_altered_by_one_byte_is_refused(&stack, &cookie).await;
    hostile_strings_are_shown_as_text(&stack, &cookie).await;
    sorted_by_expiry_and_paged_with_its_own_cursor(&stack, &cookie).await;
    a_stopped_processor_gives_its_shard_back(&mut stack, &cookie).await;
    the_session_expires_after_twelve_hours(&stack, &clock, &cookie).await;
}

/// Every page without a session redirects to the sign-in page, which comes back to it.
async fn pages_without_a_session_go_to_sign_in(stack: &Stack) {
    for path in [
        "/console/",
        "/console/licenses?q=PL",
        "/console/licenses/PL1",
        "/console/licenses/PL1/evidence",
        "/console/dead-letters",
        "/console/dead-letters/7d1f1f9e-6f3c-4c55-9d6a-0b0e2f0f0f0f",
        "/console/probe",
    ] {
        let (status, location, _) = page(stack, path, "").await;
        assert_eq!(status, 303, "{path}");
        assert!(
            location.starts_with("/console/sign-in?next=%2Fconsole%2F"),
            "{path}: {location}"
        );
    }
}

/// Wrong tokens are refused, then the address is held back; another address is not.
async fn wrong_tokens_are_refused_then_held_back(stack: &Stack) {
    for _ in 0..5 {
        let refused = sign_in(stack, "not-the-token-0123456789", "192.0.2.7", false).await;
        assert_eq!(refused.status().as_u16(), 401);
        assert!(set_cookie(&refused, "licensing_console").is_none());
    }
    let held = sign_in(stack, TOKEN, "192.0.2.7", false).await;
    assert_eq!(held.status().as_u16(), 429);
    assert!(held.headers().get("retry-after").is_some());
}

/// A right token: a session cookie that scripts cannot read, sent to this site only, Secure
/// when the proxy says the client came over TLS. Returns the session cookie.
async fn a_right_token_gets_a_cookie_scripts_cannot_read(stack: &Stack) -> String {
    let plain = sign_in(stack, TOKEN, "192.0.2.8", false).await;
    assert_eq!(plain.status().as_u16(), 303);
    let (cookie, header) = set_cookie(&plain, "licensing_console").expect("a session");
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    assert!(!header.contains("Secure"), "{header}");
    let tls = sign_in(stack, TOKEN, "192.0.2.9", true).await;
    let (_, tls_header) = set_cookie(&tls, "licensing_console").expect("a session");
    assert!(tls_header.contains("; Secure"), "{tls_header}");
    cookie
}

/// The one callback so far is counted under its result code, and drawn as this hour's bar; the
/// shard card names the processor holding the one shard. Returns the overview page.
async fn the_overview_counts_callbacks_and_names_the_shard_holder(
    stack: &Stack,
    cookie: &str,
) -> String {
    let (status, _, overview) = page(stack, "/console/", cookie).await;
    assert_eq!(status, 200);
    assert!(overview.contains("Overview") && overview.contains(OPERATOR));
    // The one callback so far is counted under its result code, and drawn as this hour's bar.
    assert!(
        overview.contains("<tr><td><code>000000</code></td><td>1</td></tr>"),
        "{overview}"
    );
    assert!(
        overview.contains("000000 × 1"),
        "the bar's title names its count"
    );
    // The shard card names the processor holding the one shard.
    let leases = stack.store.shard_leases().await.unwrap();
    let shards = &overview[overview.find(r#"id="shards""#).expect("the shard card")..];
    assert!(
        shards.contains(&format!(r#"<span class="ok">{}</span>"#, leases[0].1)),
        "{leases:?} {shards}"
    );
    overview
}

/// A form post without this session's CSRF token is refused.
async fn a_form_needs_the_session_s_csrf_token(stack: &Stack, cookie: &str, overview: &str) {
    let csrf = csrf_in(overview);
    for form in [vec![], vec![("csrf", "forged")]] {
        let refused = client()
            .post(stack.query_url("/console/licenses/PL1/activation"))
            .header("Cookie", cookie)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form_body(&form))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{form:?}");
    }
    let accepted = client()
        .post(stack.query_url("/console/licenses/PL1/activation"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status().as_u16(), 303);
    let requested = eventually("the activation request applied", 30, || async {
        stack
            .events("license-PL1")
            .await
            .into_iter()
            .find(|e| e.event_type == "activation_requested")
    })
    .await;
    assert_eq!(requested.metadata.actor.as_deref(), Some(OPERATOR));
    assert_eq!(requested.metadata.source.as_deref(), Some("console"));
}

/// A session cookie altered by one byte is refused.
async fn a_cookie_altered_by_one_byte_is_refused(stack: &Stack, cookie: &str) {
    let value = cookie.split_once('=').unwrap().1;
    for i in [0, value.len() / 2, value.len() - 1] {
        let mut bytes = value.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        let altered = format!("licensing_console={}", String::from_utf8(bytes).unwrap());
        let (status, location, _) = page(stack, "/console/", &altered).await;
        assert_eq!(
            (status, location.starts_with("/console/sign-in")),
            (303, true),
            "byte {i}"
        );
    }
}

/// Hostile strings stored in events are shown as text, never as markup.
async fn hostile_strings_are_shown_as_text(stack: &Stack, cookie: &str) {
    let (status, _, list) = page(stack, "/console/licenses?q=PL%3C", cookie).await;
    assert_eq!(status, 200);
    assert!(list.contains("PL&lt;script&gt;document.title="), "{list}");
    assert!(!list.contains("<script"), "no markup from stored data");
    let href = "/console/licenses/PL%3Cscript%3Edocument.title%3D%27pwned%27%3C%2Fscript%3E";
    assert!(list.contains(href), "{list}");
    let (status, _, one) = page(stack, href, cookie).await;
    assert_eq!(status, 200, "{one}");
    assert!(
        !one.contains("<script") && !one.contains("<b>1</b>"),
        "{one}"
    );
    assert!(one.contains("CS&lt;b&gt;1&lt;/b&gt;"));
}

/// Sorted by expiry, paged with the list's own cursor; a made-up cursor is a clear error.
async fn sorted_by_expiry_and_paged_with_its_own_cursor(stack: &Stack, cookie: &str) {
    let (status, _, first) = page(stack, "/console/licenses?sort=expire_at&limit=1", cookie).await;
    assert_eq!(status, 200);
    let at =
        first.find(r#"rel="next" href=""#).expect("a next page") + r#"rel="next" href=""#.len();
    let next = first[at..].split('"').next().unwrap().replace("&amp;", "&");
    let (status, _, second) = page(stack, &next, cookie).await;
    assert_eq!(status, 200, "{next}");
    let row = |html: &str| {
        let at = html
            .find(r#"<td><a href="/console/licenses/"#)
            .expect("a row");
        html[at..].split('"').nth(1).unwrap().to_owned()
    };
    assert_ne!(row(&first), row(&second), "the second page goes on");
    let (status, _, refused) = page(
        stack,
        "/console/licenses?sort=expire_at&cursor=nonsense",
        cookie,
    )
    .await;
    assert_eq!(status, 400);
    assert!(refused.contains("cursor"));
}

/// A processor stopping cleanly gives its shard back: the overview shows nobody holds it.
async fn a_stopped_processor_gives_its_shard_back(stack: &mut Stack, cookie: &str) {
    let processor = stack.processor.as_mut().unwrap();
    processor.signal("TERM");
    processor.wait_exit(30);
    let (_, _, overview) = page(stack, "/console/", cookie).await;
    let shards = &overview[overview.find(r#"id="shards""#).expect("the shard card")..];
    assert!(
        shards.contains(r#"<span class="bad">no processor holds it</span>"#),
        "{shards}"
    );
}

/// Twelve hours later (the default lifetime) the session has expired.
async fn the_session_expires_after_twelve_hours(stack: &Stack, clock: &TestClock, cookie: &str) {
    clock.set(12 * 3600 + 60);
    let (status, location, _) = page(stack, "/console/", cookie).await;
    assert_eq!(
        (status, location.starts_with("/console/sign-in")),
        (303, true)
    );
}

#[tokio::test]
async fn an_operator_works_a_license_and_a_dead_letter_in_the_browser() {
    let sim = Simulator::start();
    sim.put("PLCON1", "claimed").await;
    let clock = TestClock::new();
    let stack = console_stack(&sim, &clock).await;
    // A renewal tells us one expiry; the marketplace's activation answer will say another: drift.
    let renewal = renew("PLCON1", "CSCON1", "20291231235959", false);
    assert_eq!(code(&stack.callback(&renewal).await), "000000");
    assert_eq!(
        code(
            &stack
                .callback(&renew(
                    "PL<script>document.title='pwned'</script>",
                    "CSX",
                    "20291231235959",
                    false
                ))
                .await
        ),
        "000000"
    );
    let browser = Browser::start(1280).await;
    signs_in_after_a_wrong_token(&browser, &stack).await;
    sees_every_service_ready(&browser, &stack).await;
    finds_and_opens_the_license(&browser).await;
    reads_the_raw_callback(&browser, &renewal).await;
    activates_and_resolves_the_drift(&browser, &stack).await;
    finds_it_by_order_and_product(&browser, &stack).await;
    downloads_the_evidence_pack(&browser).await;
    reads_it_in_chinese_and_back(&browser, &stack).await;
    shows_a_hostile_code_as_text(&browser, &stack).await;
    redrives_a_dead_letter(&browser, &stack).await;
    works_at_375_px(&browser, &stack).await;
    signs_out(&browser, &stack).await;
}

/// A direct URL goes to sign-in; a wrong token is refused; the right one comes back.
async fn signs_in_after_a_wrong_token(browser: &Browser, stack: &Stack) {
    browser.open(&stack.query_url("/console/licenses")).await;
    assert!(browser.url().await.contains("/console/sign-in"));
    browser.type_into("#token", "wrong-token-0123456789").await;
    browser.follow("form.sign-in button").await;
    assert!(browser.text("p.error").await.contains("not accepted"));
    browser.screenshot("01-sign-in-refused").await;
    browser.type_into("#token", TOKEN).await;
    browser.follow("form.sign-in button").await;
    eventually("the licenses page after sign-in", 30, || async {
        browser
            .url()
            .await
            .ends_with("/console/licenses")
            .then_some(())
    })
    .await;
}

/// The overview: every service ready.
async fn sees_every_service_ready(browser: &Browser, stack: &Stack) {
    browser.open(&stack.query_url("/console/")).await;
    browser
        .wait_text("main .cards", "the services ready", |t| {
            t.matches("ready").count() >= 3 && !t.contains("not ready")
        })
        .await;
    browser.screenshot("02-overview").await;
    labels_read_as_words(browser, "overview").await;
}

/// Search by a code prefix, open the license.
async fn finds_and_opens_the_license(browser: &Browser) {
    browser.type_into("input[name=q]", "PLCON").await;
    browser.follow("form[role=search] button").await;
    browser.wait_url("q=PLCON").await;
    let row = browser.text("table tbody").await;
    assert!(
        row.contains("PLCON1") && row.contains("2029-12-31"),
        "{row}"
    );
    browser.screenshot("03-search").await;
    labels_read_as_words(browser, "licenses").await;
    browser.follow("a[href='/console/licenses/PLCON1']").await;
    assert!(browser.text("h1").await.contains("PLCON1"));
}

/// The raw callback, expanded, is exactly the body that was sent.
async fn reads_the_raw_callback(browser: &Browser, renewal: &str) {
    browser.click("#ledger details.raw summary").await;
    let exact = browser.text("#ledger details.raw pre.exact").await;
    assert_eq!(exact, renewal);
    browser.screenshot("04-raw-callback").await;
}

/// Request activation: the timeline gains the events, and the marketplace's other expiry is
/// drift, shown as a table; resolved for the marketplace's values, with a note.
async fn activates_and_resolves_the_drift(browser: &Browser, stack: &Stack) {
    browser.click("form[action$='/activation'] button").await;
    let timeline = browser
        .wait_text("#timeline", "the activation and the drift", |t| {
            t.contains("Activation requested")
                && t.contains("Drift on expiry: ours 2029-12-31 23:59:59")
        })
        .await;
    // Each row says what happened; the event's code name is behind its <details>.
    assert!(!timeline.contains("drift_detected"), "{timeline}");
    let drift = browser.text("#timeline table.drift").await;
    assert!(
        drift.contains("Ours")
            && drift.contains("Marketplace's")
            && drift.contains("2029-12-31 23:59:59"),
        "{drift}"
    );
    browser.screenshot("05-activated-with-drift").await;
    labels_read_as_words(browser, "license with drift").await;

    // Resolve the drift: keep the marketplace's values, with a note.
    browser
        .click("form[action$='/drift'] input[value=marketplace]")
        .await;
    browser
        .type_into("#note", "the marketplace's renewal is right")
        .await;
    browser.click("form[action$='/drift'] button").await;
    browser
        .wait_text("#timeline", "the drift resolved", |t| {
            t.contains(&format!(
                "Drift resolved by {OPERATOR}, keeping the marketplace's values"
            ))
        })
        .await;
    let resolved = stack
        .events("license-PLCON1")
        .await
        .into_iter()
        .find(|e| e.event_type == "drift_resolved")
        .unwrap();
    assert_eq!(resolved.metadata.actor.as_deref(), Some(OPERATOR));
    browser
        .wait_text("#drift", "the view without drift", |t| t.contains("none"))
        .await;
}

/// The marketplace's answer named its order and product: the search finds the license by each.
async fn finds_it_by_order_and_product(browser: &Browser, stack: &Stack) {
    let order = browser.text("#order").await;
    let product = browser.text("#product").await;
    for q in [order, product] {
        browser
            .open(&stack.query_url(&format!("/console/licenses?q={q}")))
            .await;
        assert!(browser.text("table tbody").await.contains("PLCON1"), "{q}");
    }
    browser
        .open(&stack.query_url("/console/licenses/PLCON1"))
        .await;
}

/// Download the evidence pack.
async fn downloads_the_evidence_pack(browser: &Browser) {
    browser.click("a[href$='/evidence']").await;
    let pack = browser.downloads.join("evidence-PLCON1.zip");
    eventually("the evidence pack downloaded", 30, || async {
        std::fs::read(&pack)
            .ok()
            .filter(|zip| zip.starts_with(b"PK"))
    })
    .await;
}

/// The same page in 简体中文, then back; the choice is remembered.
async fn reads_it_in_chinese_and_back(browser: &Browser, stack: &Stack) {
    browser.follow("header a.lang").await;
    browser.wait_url("lang=zh-CN").await;
    assert!(browser.text("#now").await.contains("当前状态"));
    assert!(browser.text("header").await.contains("退出"));
    assert!(browser.text("#timeline").await.contains("已请求激活"));
    browser.screenshot("06-license-zh-CN").await;
    labels_read_as_words(browser, "license, zh-CN").await;
    browser.open(&stack.query_url("/console/")).await;
    labels_read_as_words(browser, "overview, zh-CN").await;
    browser.open(&stack.query_url("/console/probe")).await;
    assert!(
        browser.text("h1").await.contains("拨测"),
        "the choice is remembered"
    );
    labels_read_as_words(browser, "probe, zh-CN").await;
    browser.follow("header a.lang").await;
    assert!(browser.text("h1").await.contains("Probe"));
    labels_read_as_words(browser, "probe").await;
}

/// A hostile code is shown as text; no script runs.
async fn shows_a_hostile_code_as_text(browser: &Browser, stack: &Stack) {
    browser
        .open(&stack.query_url("/console/licenses?q=PL%3Cscript"))
        .await;
    let listed = browser.text("table tbody").await;
    assert!(
        listed.contains("PL<script>document.title='pwned'</script>"),
        "{listed}"
    );
    assert_ne!(browser.title().await, "pwned");
    browser.follow("table tbody a").await;
    assert_ne!(browser.title().await, "pwned");
    assert!(browser.text("h1").await.contains("<script>"));
}

/// A command the processor cannot apply (a stream this build cannot read) is parked as a dead
/// letter; inspected, repaired, re-driven from the console, applied once.
async fn redrives_a_dead_letter(browser: &Browser, stack: &Stack) {
    stack.make_unreadable("license-PLCONDL").await;
    assert_eq!(
        code(&stack.callback(&status("PLCONDL", "FREEZE")).await),
        "000004"
    );
    let letter = stack
        .wait_dead_letter(|l| l.letter.license.as_deref() == Some("PLCONDL"))
        .await;
    browser
        .open(&stack.query_url("/console/dead-letters"))
        .await;
    assert!(browser.text("#dead-letters").await.contains("PLCONDL"));
    browser.screenshot("07-dead-letters").await;
    labels_read_as_words(browser, "dead letters").await;
    browser
        .follow(&format!(
            "a[href='/console/dead-letters/{}']",
            letter.letter.id
        ))
        .await;
    assert!(browser.text("pre.exact").await.contains("PLCONDL"));
    labels_read_as_words(browser, "dead letter").await;
    let client = stack.store.client().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             DELETE FROM events WHERE stream_id = 'license-PLCONDL';
             ALTER TABLE events ENABLE TRIGGER events_append_only;",
        )
        .await
        .unwrap();
    browser.follow("form[action$='/redrive'] button").await;
    assert!(browser.text("#state").await.contains(OPERATOR));
    stack.wait_event("license-PLCONDL", "frozen").await;
    let stored = stack.store.dead_letter(letter.letter.id).await.unwrap();
    assert_eq!(stored.unwrap().redriven_by.as_deref(), Some(OPERATOR));
    browser.screenshot("08-dead-letter-redriven").await;
    // Applied once.
    let frozen = stack
        .event_types("license-PLCONDL")
        .await
        .iter()
        .filter(|t| *t == "frozen")
        .count();
    assert_eq!(frozen, 1);
}

/// Usable at 375 px: the license page still shows its state and actions.
async fn works_at_375_px(browser: &Browser, stack: &Stack) {
    browser.resize(375, 900).await;
    browser
        .open(&stack.query_url("/console/licenses/PLCON1"))
        .await;
    assert!(
        browser
            .find("form[action$='/activation'] button")
            .await
            .is_some()
    );
    browser.screenshot("09-license-375px").await;
}

/// Sign out; a direct URL then goes to sign-in.
async fn signs_out(browser: &Browser, stack: &Stack) {
    assert_eq!(browser.text("form.sign-out button").await, "Sign out");
    browser.follow("form.sign-out button").await;
    browser.wait_url("/console/sign-in").await;
    browser.open(&stack.query_url("/console/")).await;
    assert!(browser.url().await.contains("/console/sign-in"));
    browser.screenshot("10-signed-out").await;
}

/// The licenses page at `query` with `cookie`.
/// Whether `word` is a code name rather than a word: snake_case (`access_until`) or camelCase
/// (`expireTime`).
fn is_code_name(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
    let snake = w.contains('_')
        && !w.starts_with('_')
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let camel = w.starts_with(|c: char| c.is_ascii_lowercase())
        && w.chars().any(|c| c.is_ascii_uppercase())
        && w.chars().all(|c| c.is_ascii_alphanumeric());
    snake || camel
}

/// Every label of the open page (headings, terms, column heads, form labels and legends,
/// disclosure summaries, buttons, navigation) reads as words in the page's language: none shows a
/// code name.
async fn labels_read_as_words(browser: &Browser, page: &str) {
    assert!(is_code_name("access_until") && is_code_name("(expireTime)"));
    assert!(!is_code_name("Access") && !is_code_name("PLCON1") && !is_code_name("SHA-256"));
    let labels = browser
        .all("h1, h2, h3, h4, dt, th, label, legend, summary, button, nav a")
        .await;
    assert!(!labels.is_empty(), "{page}: no labels found");
    for element in labels {
        let text = browser.text_of(&element).await;
        let names: Vec<&str> = text
            .split_whitespace()
            .filter(|w| is_code_name(w))
            .collect();
        assert!(
            names.is_empty(),
            "{page}: the label {text:?} shows code names {names:?}"
        );
    }
}

async fn licenses_at(query: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(format!("{query}/console/licenses"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// A signed-in page's status at `query` with `cookie`: 200, or 303 to the sign-in page.
async fn status_at(query: &str, cookie: &str) -> (u16, String) {
    let response = licenses_at(query, cookie).await;
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status().as_u16(), location)
}

/// Signs out at `query` with `cookie` (`everywhere`: every session of its token).
async fn sign_out_at(query: &str, cookie: &str, everywhere: bool) {
    let page = licenses_at(query, cookie).await;
    let csrf = csrf_in(&page.text().await.unwrap());
    let mut fields = vec![("csrf", csrf.as_str())];
    if everywhere {
        fields.push(("everywhere", "1"));
    }
    let answer = client()
        .post(format!("{query}/console/sign-out"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 303, "signed out");
}

#[tokio::test]
async fn a_sign_out_holds_on_every_projector_and_sign_out_everywhere_ends_every_session() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let other = Service::start("licensing-projector", &stack.projector_env(&sim.url, &[]));
    let first = stack.query_url("");
    let second = format!("http://{}", other.ready["query"].as_str().unwrap());

    // One session works on both projectors (one secret); signed out on the first, a copy of its
    // cookie is refused on the second too, while another session of the same token goes on.
    let copied = console_session(&first, TOKEN).await;
    let kept = console_session(&first, TOKEN).await;
    assert_eq!(status_at(&second, &copied).await.0, 200);
    sign_out_at(&first, &copied, false).await;
    for query in [&first, &second] {
        let (status, location) = status_at(query, &copied).await;
        assert_eq!(status, 303, "{query}: the signed-out cookie is refused");
        assert!(location.starts_with("/console/sign-in"), "{location}");
    }
    assert_eq!(status_at(&second, &kept).await.0, 200);

    // Sign out everywhere, from the second: every session of the token issued until then ends on
    // both; a session signed in afterwards works.
    let another = console_session(&second, TOKEN).await;
    sign_out_at(&second, &kept, true).await;
    for cookie in [&kept, &another] {
        for query in [&first, &second] {
            assert_eq!(status_at(query, cookie).await.0, 303, "{query}");
        }
    }
    let fresh = console_session(&first, TOKEN).await;
    assert_eq!(status_at(&second, &fresh).await.0, 200);
}
