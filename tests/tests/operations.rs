//! Operating the services: settings errors, metrics, health, dead letters, graceful stops.

mod support;

use std::process::Command;

use licensing_bus::{Bus, BusConfig, QueueType};
use serde_json::{Value, json};
use support::*;

fn run_with(binary: &str, env: &[(&str, &str)]) -> (i32, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("target")
        });
    let output = Command::new(target.join("debug").join(binary))
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A binary, the settings it is started with, and the variable its error must name.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn a_bad_setting_stops_start_up_and_names_the_variable() {
    let _stack = Stack::start(&[]).await; // builds the binaries
    let base = [
        (
            "LICENSING_DATABASE_URL",
            "postgres://postgres@127.0.0.1/postgres",
        ),
        (
            "LICENSING_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        ("LICENSING_CALLBACK_KEYS", KEY),
        ("LICENSING_API_TOKENS", TOKEN),
    ];
    let cases: &[Case] = &[
        (
            "licensing-ingress",
            &[("LICENSING_REPLY_DEADLINE_MS", "soon")],
            "LICENSING_REPLY_DEADLINE_MS",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_REPLY_DEADLINE_MS", "9000")],
            "LICENSING_REPLY_DEADLINE_MS",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_CALLBACK_KEYS", "")],
            "LICENSING_CALLBACK_KEYS",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_API_TOKENS", "short")],
            "LICENSING_API_TOKENS",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_CALLBACK_KEYS", "CHANGE-ME")],
            "LICENSING_CALLBACK_KEYS",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_API_TOKENS", "an-example-token-0123456789")],
            "LICENSING_API_TOKENS",
        ),
        (
            "licensing-projector",
            &[
                ("LICENSING_KOOGALLERY_AK", SIM_AK),
                ("LICENSING_KOOGALLERY_SK", "CHANGE-ME"),
            ],
            "LICENSING_KOOGALLERY_SK",
        ),
        (
            "licensing-projector",
            &[
                ("LICENSING_KOOGALLERY_AK", SIM_AK),
                ("LICENSING_KOOGALLERY_SK", SIM_SK),
                ("LICENSING_KOOGALLERY_URL", "http://koogallery-sim:9090"),
            ],
            "LICENSING_KOOGALLERY_URL",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_AMQP_QUEUE_TYPE", "stream")],
            "LICENSING_AMQP_QUEUE_TYPE",
        ),
        (
            "licensing-ingress",
            &[("LICENSING_INGRESS_ADDR", "127.0.0.1:notaport")],
            "LICENSING_INGRESS_ADDR",
        ),
        (
            "licensing-processor",
            &[("LICENSING_MARKET_TIME_ZONE", "Asia/Shanghai")],
            "LICENSING_MARKET_TIME_ZONE",
        ),
        (
            "licensing-processor",
            &[("LICENSING_UNKNOWN_LICENSE", "sometimes")],
            "LICENSING_UNKNOWN_LICENSE",
        ),
        (
            "licensing-processor",
            &[("LICENSING_DATABASE_URL", "")],
            "LICENSING_DATABASE_URL",
        ),
        (
            "licensing-processor",
            &[("LICENSING_CONFIG", "/nonexistent/licensing.env")],
            "LICENSING_CONFIG",
        ),
        (
            "licensing-processor",
            &[("LICENSING_PROCESSOR_BATCH", "0")],
            "LICENSING_PROCESSOR_BATCH",
        ),
        (
            "licensing-processor",
            &[("LICENSING_PROCESSOR_BATCH", "many")],
            "LICENSING_PROCESSOR_BATCH",
        ),
    ];
    for (binary, overrides, variable) in cases {
        let mut env: Vec<(&str, &str)> = base
            .iter()
            .copied()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .collect();
        env.extend(overrides.iter().copied());
        env.push(("LICENSING_LOG_FORMAT", "text"));
        let (code, stderr) = run_with(binary, &env);
        assert_ne!(code, 0, "{binary} with {overrides:?} started");
        assert!(
            stderr.contains(variable),
            "{binary} with {overrides:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn settings_can_come_from_a_file() {
    let mut stack = Stack::start(&[]).await;
    let file =
        std::env::temp_dir().join(format!("licensing-{}.env", uuid::Uuid::new_v4().simple()));
    let keys = format!("# the access key from 密钥管理\nLICENSING_CALLBACK_KEYS=\"{KEY}\"\n");
    std::fs::write(&file, keys).unwrap();
    stack.ingress = None;
    stack.env.retain(|(k, _)| k != "LICENSING_CALLBACK_KEYS");
    stack
        .env
        .push(("LICENSING_CONFIG".into(), file.display().to_string()));
    stack.start_ingress();
    stack.wait_ingress_ready().await;
    assert_eq!(
        code(&stack.callback(&status("PL500", "FREEZE")).await),
        "000000"
    );
    std::fs::remove_file(file).ok();
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let stack = Stack::start(&[]).await;
    stack.callback(&status("PL501", "FREEZE")).await;
    stack
        .callback_signed("{}", "signature=00&timestamp=1&nonce=x", "application/json")
        .await;
    let get = |url: String| {
        let http = stack.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get(stack.internal_url("/healthz")).await.0, 200);
    assert_eq!(get(stack.internal_url("/readyz")).await.0, 200);
    assert_eq!(
        get(format!("http://{}/healthz", stack.public_addr()))
            .await
            .0,
        200
    );
    let (status, metrics) = get(stack.internal_url("/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"licensing_ingress_callbacks_total{activity="updateLicenseCodeStatus",result_code="000000"} 1"#), "{metrics}");
    assert!(
        metrics.contains(
            r#"licensing_ingress_verification_failures_total{reason="outside_window"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("licensing_ingress_publish_confirm_seconds_count 1"),
        "{metrics}"
    );
    // Metrics are not published on the public listener.
    let public = stack.public_addr();
    assert_eq!(get(format!("http://{public}/metrics")).await.0, 404);

    let ops = stack.processor.as_ref().unwrap().ready["ops"]
        .as_str()
        .unwrap()
        .to_owned();
    // Ready once every task is up: a callback answered proves the consumer is, not that the
    // dead-letter keeper and the refusal writer have their broker connections yet.
    eventually("the processor to be ready", 30, || async {
        (get(format!("http://{ops}/readyz")).await.0 == 200).then_some(())
    })
    .await;
    let (_, metrics) = get(format!("http://{ops}/metrics")).await;
    assert!(metrics.contains(r#"licensing_processor_commands_total{kind="updateLicenseCodeStatus",outcome="applied"} 1"#), "{metrics}");
}

#[tokio::test]
async fn an_undecodable_command_is_dead_lettered_with_its_reason_and_others_go_on() {
    let stack = Stack::start(&[]).await;
    let mut config = BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    config.queue_type = QueueType::Classic;
    let bus = Bus::connect(config).await.unwrap();
    bus.publish_command(
        "",
        b"this is not an envelope",
        "poison-1".into(),
        "c".into(),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        code(&stack.callback(&status("PL502", "FREEZE")).await),
        "000000",
        "the next command is processed"
    );

    // Parked with its reason, and kept by the processor's keeper.
    let parked = stack
        .wait_dead_letter(|l| l.letter.message_id == "poison-1")
        .await;
    assert_eq!(parked.letter.body, b"this is not an envelope");
    assert!(
        parked.letter.reason.starts_with("undecodable"),
        "{parked:?}"
    );
    assert_eq!(parked.letter.license, None);
    assert_eq!(parked.redriven_at, None);
}

#[tokio::test]
async fn the_ingress_stops_cleanly_on_sigterm() {
    let mut stack = Stack::start(&[]).await;
    let ingress = stack.ingress.as_mut().unwrap();
    ingress.signal("TERM");
    let status = ingress.wait_exit(15);
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn services_started_together_on_a_fresh_database_never_fail_on_the_migrations() {
    let stack = Stack::start(&[]).await;
    let admin = stack.store.client().await.unwrap();
    let http = reqwest::Client::new();
    for trial in 0..6 {
        let name = format!("{}_fresh_{trial}", stack.db.name);
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap();
        let mut env = stack.env.clone();
        env.retain(|(k, _)| k != "LICENSING_DATABASE_URL");
        env.extend(
            [
                (
                    "LICENSING_DATABASE_URL",
                    stack.db.url.replace(&stack.db.name, &name),
                ),
                ("LICENSING_KOOGALLERY_URL", "http://127.0.0.1:9".to_owned()),
                ("LICENSING_KOOGALLERY_AK", SIM_AK.to_owned()),
                ("LICENSING_KOOGALLERY_SK", SIM_SK.to_owned()),
                ("LICENSING_QUERY_ADDR", "127.0.0.1:0".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let both = ["licensing-processor", "licensing-projector"].map(|binary| {
            let env = env.clone();
            std::thread::spawn(move || Service::start(binary, &env))
        });
        let [mut processor, mut projector] = both.map(|started| started.join().unwrap());
        let urls = [
            format!("http://{}/readyz", processor.ready["ops"].as_str().unwrap()),
            format!(
                "http://{}/readyz",
                projector.ready["query"].as_str().unwrap()
            ),
        ];
        for url in &urls {
            eventually(
                &format!("{url} to be ready (trial {trial})"),
                30,
                || async {
                    let ok = http.get(url).send().await.ok()?.status() == 200;
                    ok.then_some(())
                },
            )
            .await;
        }
        for service in [&mut processor, &mut projector] {
            assert!(
                service.child.try_wait().unwrap().is_none(),
                "a service exited (trial {trial}): {:?}",
                service.stderr.lock().unwrap()
            );
        }
        drop((processor, projector));
        admin
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_plain_http_marketplace_url_elsewhere_than_loopback_needs_the_explicit_setting() {
    let mut stack = Stack::start(&[]).await;
    stack.start_projector_with(
        "http://koogallery-sim.invalid:9090",
        &[("LICENSING_KOOGALLERY_ALLOW_HTTP", "true")],
    );
    let projector = stack.projector.as_ref().unwrap();
    assert!(
        !projector
            .logged("LICENSING_KOOGALLERY_ALLOW_HTTP=true")
            .is_empty(),
        "a warning at start"
    );
}

#[tokio::test]
async fn a_dead_letter_is_kept_listed_and_redriven_then_applied_exactly_once() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[
        ("LICENSING_REPLY_DEADLINE_MS", "500"),
        ("LICENSING_API_TOKENS", &format!("oncall:{TOKEN}")),
    ])
    .await;
    stack.start_projector(&sim.url);
    // A stream this build cannot read: its command is parked.
    stack.make_unreadable("license-PLDL").await;
    assert_eq!(
        code(&stack.callback(&status("PLDL", "FREEZE")).await),
        "000004"
    );
    let id = listed_readable_and_counted(&stack).await;
    repaired_then_redriven_once(&stack, &id).await;
    a_redrive_published_twice_is_applied_once(&stack, &id).await;
}

/// `POST` on the query API with `token`: the status and the JSON body.
async fn post(stack: &Stack, path: &str, token: &str) -> (u16, Value) {
    let response = stack
        .http
        .post(stack.query_url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Listed with its reason, license and kind; readable whole; counted. Returns its id.
async fn listed_readable_and_counted(stack: &Stack) -> String {
    let listed = eventually("the dead letter listed", 30, || async {
        let (_, body) = stack.query("/v1/dead-letters", Some(TOKEN)).await;
        body["dead_letters"]
            .as_array()
            .and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(listed["license"], "PLDL");
    assert_eq!(listed["kind"], "updateLicenseCodeStatus");
    assert!(
        listed["reason"].as_str().unwrap().contains("license-PLDL"),
        "{listed}"
    );
    assert_eq!(listed["redriven_at"], Value::Null);
    let id = listed["id"].as_str().unwrap().to_owned();
    let (code_one, one) = stack
        .query(&format!("/v1/dead-letters/{id}"), Some(TOKEN))
        .await;
    assert_eq!(code_one, 200);
    assert_eq!(one["body_json"]["command"]["kind"], "callback", "{one}");
    assert!(one["body_text"].as_str().unwrap().contains("PLDL"));
    assert!(one["body_base64"].is_string());
    eventually("the waiting gauge", 30, || async {
        (stack
            .projector_gauge("licensing_dead_letters_waiting")
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;
    assert_eq!(
        stack
            .query("/v1/dead-letters/nonsense", Some(TOKEN))
            .await
            .0,
        404
    );
    assert_eq!(
        post(
            stack,
            &format!("/v1/dead-letters/{id}/redrive"),
            "wrong-token-0123456789"
        )
        .await
        .0,
        401
    );
    id
}

/// The cause is repaired (here: the unreadable event removed), then the letter re-driven, once.
async fn repaired_then_redriven_once(stack: &Stack, id: &str) {
    let client = stack.store.client().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE events DISABLE TRIGGER events_append_only;
             DELETE FROM events WHERE stream_id = 'license-PLDL';
             ALTER TABLE events ENABLE TRIGGER events_append_only;",
        )
        .await
        .unwrap();
    let (redrive_code, redriven) =
        post(stack, &format!("/v1/dead-letters/{id}/redrive"), TOKEN).await;
    assert_eq!(redrive_code, 200, "{redriven}");
    assert_eq!(redriven["redriven"][0]["id"], id);
    assert_eq!(redriven["redriven"][0]["redriven_by"], "oncall");
    stack.wait_event("license-PLDL", "frozen").await;
    let (again, refused) = post(stack, &format!("/v1/dead-letters/{id}/redrive"), TOKEN).await;
    assert_eq!(again, 409);
    assert_eq!(refused["code"], "redriven_already");
    let (_, redriven_list) = stack
        .query("/v1/dead-letters?state=redriven", Some(TOKEN))
        .await;
    assert_eq!(redriven_list["dead_letters"][0]["redriven_by"], "oncall");
    let (_, waiting) = stack.query("/v1/dead-letters", Some(TOKEN)).await;
    assert_eq!(waiting["dead_letters"], json!([]));
}

/// A re-drive published twice (its mark lost) is still applied once: the inbox knows it.
async fn a_redrive_published_twice_is_applied_once(stack: &Stack, id: &str) {
    let client = stack.store.client().await.unwrap();
    client
        .execute(
            "UPDATE dead_letters SET redriven_at = NULL, redriven_by = NULL WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let amqp = amqp_url();
    let bus_env = [
        ("LICENSING_AMQP_URL", amqp.as_str()),
        ("LICENSING_AMQP_PREFIX", stack.prefix.as_str()),
        ("LICENSING_AMQP_QUEUE_TYPE", "classic"),
    ];
    let (exit, out) = stack.tool("licensing-processor", &["redrive", "--all"], &bus_env);
    assert_eq!(exit, 0, "{out}");
    assert!(out.contains(&format!("redriven {id}")), "{out}");
    let ops = stack.processor.as_ref().unwrap().ready["ops"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(
        "the second delivery answered from the inbox",
        30,
        || async {
            let metrics = stack
                .http
                .get(format!("http://{ops}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            metrics
                .lines()
                .any(|l| {
                    l.starts_with("licensing_processor_commands_total{")
                        && l.contains("outcome=\"redelivered\"")
                })
                .then_some(())
        },
    )
    .await;
    let frozen = stack
        .event_types("license-PLDL")
        .await
        .iter()
        .filter(|t| *t == "frozen")
        .count();
    assert_eq!(frozen, 1, "applied exactly once");
    let (exit, out) = stack.tool("licensing-processor", &["redrive", "--all"], &bus_env);
    assert_eq!(exit, 1, "{out}");
    assert!(out.contains("no dead letter is waiting"), "{out}");
    let (exit, out) = stack.tool("licensing-processor", &["redrive", "not-an-id"], &bus_env);
    assert_eq!(exit, 2, "{out}");
    let (exit, _) = stack.tool("licensing-processor", &["redrive"], &bus_env);
    assert_eq!(exit, 2, "an id or --all is required");
}
