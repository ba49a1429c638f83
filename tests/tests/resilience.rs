//! The pipeline when parts fail: the processor stopped, killed or terminated, the broker gone,
//! and hundreds of callbacks at once.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::*;
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn with_the_processor_stopped_callbacks_are_queued_answered_000004_and_applied_once_later() {
    let mut stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "1000")]).await;
    stack.processor = None; // killed
    let body = renew("PL300", "CS1", "20270101000000", false);
    let started = Instant::now();
    let answer = stack.callback(&body).await;
    assert_eq!(code(&answer), "000004", "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "answered within the deadline ({:?})",
        started.elapsed()
    );
    assert_eq!(stack.event_count().await, 0);

    stack.start_processor();
    eventually("the queued callback to be applied", 30, || async {
        (stack.event_count().await == 2).then_some(())
    })
    .await;
    // The marketplace's retry now gets the stored result.
    assert_eq!(code(&stack.callback(&body).await), "000000");
    assert_eq!(
        stack.event_types("license-PL300").await,
        ["registered", "renewed"]
    );
}

/// A TCP relay in front of RabbitMQ that the test can cut. It runs on its own thread, so that it
/// keeps relaying while the test thread waits for a service to start.
struct Relay {
    port: u16,
    cut: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Relay {
    async fn start() -> Self {
        Self::on(0)
    }

    /// A relay listening on `port` (0: any free port).
    fn on(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, stop) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                // Dropping the JoinSet (when `stop` fires) aborts every relayed connection.
                let mut connections = tokio::task::JoinSet::new();
                let accept = async {
                    loop {
                        let Ok((mut inbound, _)) = listener.accept().await else {
                            return;
                        };
                        connections.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5672").await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stop => {}
                }
            });
        });
        Self {
            port,
            cut: Some(cut),
        }
    }

    /// Closes the listener and every relayed connection.
    fn cut(&mut self) {
        if let Some(cut) = self.cut.take() {
            let _ = cut.send(());
        }
    }
}

#[tokio::test]
async fn with_the_broker_gone_callbacks_get_000005_quickly() {
    let mut relay = Relay::start().await;
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", relay.port);
    let mut stack = Stack::start(&[]).await;
    // The ingress talks to RabbitMQ through the relay; the processor directly.
    stack.ingress = None;
    stack.env.retain(|(k, _)| k != "LICENSING_AMQP_URL");
    stack.env.push(("LICENSING_AMQP_URL".into(), url));
    stack.start_ingress();
    stack.wait_ingress_ready().await;
    assert_eq!(
        code(&stack.callback(&status("PL301", "FREEZE")).await),
        "000000"
    );

    relay.cut();
    let started = Instant::now();
    let answer = stack.callback(&status("PL301", "UNFREEZE")).await;
    assert_eq!(code(&answer), "000005", "{answer}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered in {:?}",
        started.elapsed()
    );
    let ready = stack
        .http
        .get(stack.internal_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready without a broker");
    assert_eq!(
        stack.event_types("license-PL301").await,
        ["registered", "frozen", "access_changed"],
        "nothing applied"
    );
}

/// Sends `count` distinct renewals over `licenses` licenses, concurrently; returns (body, answer code).
async fn burst(stack: &Stack, licenses: usize, count: usize) -> Vec<(String, String, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let license = format!("PL4{:03}", i % licenses);
        let body = renew(
            &license,
            &format!("CS{i:05}"),
            &format!("2030{:02}01000000", 1 + i % 12),
            false,
        );
        let url = stack.callback_url();
        let http = stack.http.clone();
        tasks.spawn(async move {
            let response = http
                .post(format!("{url}?{}", fresh_query(KEY, &body)))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let answer: serde_json::Value = response.json().await.unwrap();
            (license, body, code(&answer).to_owned())
        });
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.unwrap());
    }
    results
}

/// Every renewal in the store exactly once per order, versions contiguous; returns the count.
async fn check_exactly_once(stack: &Stack, licenses: usize) -> usize {
    let mut total = 0;
    for l in 0..licenses {
        let events = stack.events(&format!("license-PL4{l:03}")).await;
        let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
        assert_eq!(
            versions,
            (1..=events.len() as i64).collect::<Vec<_>>(),
            "contiguous versions"
        );
        let mut orders: HashMap<String, usize> = HashMap::new();
        for e in events.iter().filter(|e| e.event_type == "renewed") {
            *orders
                .entry(e.payload["order_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert!(
            orders.values().all(|n| *n == 1),
            "a renewal appended twice: {orders:?}"
        );
        total += orders.len();
    }
    total
}

#[tokio::test]
async fn hundreds_of_concurrent_callbacks_are_each_applied_exactly_once() {
    let stack = Stack::start(&[]).await;
    let results = burst(&stack, 30, 300).await;
    assert!(
        results
            .iter()
            .all(|(_, _, c)| c == "000000" || c == "000004"),
        "{:?}",
        results
            .iter()
            .filter(|(_, _, c)| c != "000000")
            .collect::<Vec<_>>()
    );
    let confirmed = results.iter().filter(|(_, _, c)| c == "000000").count();
    assert!(confirmed > 0);
    let applied = eventually("all 300 renewals to be applied", 60, || async {
        let n = check_exactly_once(&stack, 30).await;
        (n == 300).then_some(n)
    })
    .await;
    assert_eq!(applied, 300);
}

#[tokio::test]
async fn a_processor_killed_mid_load_loses_and_duplicates_nothing() {
    let mut stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "500")]).await;
    let results = {
        let sending = burst(&stack, 10, 120);
        let kill = async {
            eventually("some renewals to be applied", 30, || async {
                (stack.event_count().await > 20).then_some(())
            })
            .await;
            stack.processor.as_ref().unwrap().signal("KILL");
        };
        let (results, ()) = tokio::join!(sending, kill);
        results
    };
    stack.processor.as_mut().unwrap().wait_exit(10);
    assert!(
        results
            .iter()
            .all(|(_, _, c)| c == "000000" || c == "000004"),
        "{results:?}"
    );
    stack.start_processor();
    eventually(
        "all 120 renewals to be applied exactly once",
        60,
        || async { (check_exactly_once(&stack, 10).await == 120).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_processor_terminated_under_load_stops_cleanly_and_loses_nothing() {
    let mut stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "500")]).await;
    let results = {
        let burst_stack = &stack;
        let sending = burst(burst_stack, 10, 100);
        let terminate = async {
            eventually("some renewals to be applied", 30, || async {
                (stack.event_count().await > 10).then_some(())
            })
            .await;
            stack.processor.as_ref().unwrap().signal("TERM");
        };
        let (results, ()) = tokio::join!(sending, terminate);
        results
    };
    let status = stack.processor.as_mut().unwrap().wait_exit(20);
    assert!(status.success(), "exit status {status}");
    assert!(
        results
            .iter()
            .all(|(_, _, c)| c == "000000" || c == "000004")
    );
    stack.start_processor();
    eventually(
        "all 100 renewals to be applied exactly once",
        60,
        || async { (check_exactly_once(&stack, 10).await == 100).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_license_the_processor_cannot_read_is_dead_lettered_alone_out_of_its_batch() {
    let mut stack = Stack::start(&[
        ("LICENSING_REPLY_DEADLINE_MS", "500"),
        ("LICENSING_PROCESSOR_WORKERS", "1"),
    ])
    .await;
    stack.processor = None; // killed: the commands wait in the queue and arrive together
    // A stream this build cannot read (written by a later release, say).
    stack.make_unreadable("license-PLBAD").await;
    let mut bodies: Vec<String> = (0..20)
        .map(|i| status(&format!("PL6{i:02}"), "FREEZE"))
        .collect();
    bodies.insert(10, status("PLBAD", "FREEZE"));
    for body in &bodies {
        assert_eq!(code(&stack.callback(body).await), "000004");
    }

    stack.start_processor();
    eventually("the readable licenses to be frozen", 30, || async {
        (stack.event_count().await == 1 + 3 * 20).then_some(())
    })
    .await;
    let parked = stack
        .wait_dead_letter(|l| l.letter.license.as_deref() == Some("PLBAD"))
        .await;
    assert!(parked.letter.reason.contains("license-PLBAD"), "{parked:?}");
    assert_eq!(
        parked.letter.kind.as_deref(),
        Some("updateLicenseCodeStatus")
    );

    // They were applied together: fewer transactions than commands.
    let metrics = stack.processor_metrics().await;
    let transactions: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("licensing_processor_batch_size_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        transactions < 20,
        "{transactions} transactions for 21 commands"
    );
    // The marketplace's retries get the stored answers.
    assert_eq!(code(&stack.callback(&bodies[0]).await), "000000");
}

/// Makes the stack's database refuse writes (`25006`, as a primary turned replica after a
/// failover does) for new sessions, and ends the current ones; or lets it write again.
async fn set_read_only(stack: &Stack, read_only: bool) {
    let client = stack.store.client().await.unwrap();
    let name = &stack.db.name;
    let setting = if read_only {
        format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on")
    } else {
        format!("ALTER DATABASE \"{name}\" RESET default_transaction_read_only")
    };
    client.batch_execute(&setting).await.unwrap();
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[name],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn with_postgresql_read_only_for_20_s_under_load_nothing_is_dead_lettered_and_all_is_applied_after()
 {
    let stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "500")]).await;
    assert_eq!(
        code(&stack.callback(&status("PL700", "FREEZE")).await),
        "000000"
    );
    set_read_only(&stack, true).await;
    let started = Instant::now();
    let mut sent = Vec::new();
    let mut round = 0;
    let mut oldest_lane = 0.0_f64;
    while started.elapsed() < Duration::from_secs(20) {
        let bodies: Vec<String> = (0..5)
            .map(|i| {
                renew(
                    &format!("PL7{round:02}{i}"),
                    &format!("CS7{round:02}{i}"),
                    "20300101000000",
                    false,
                )
            })
            .collect();
        let answers =
            futures_util::future::join_all(bodies.iter().map(|b| stack.callback(b))).await;
        for (body, answer) in bodies.into_iter().zip(answers) {
            assert_eq!(
                code(&answer),
                "000004",
                "nothing commits while read-only: {answer}"
            );
            sent.push(body);
        }
        round += 1;
        let ages = samples(
            &stack.processor_metrics().await,
            "licensing_processor_lane_age_seconds",
        );
        oldest_lane = ages.into_iter().fold(oldest_lane, f64::max);
    }
    let metrics = stack.processor_metrics().await;
    assert!(
        !metrics.contains("licensing_processor_store_unavailable_total 0"),
        "the processor met the read-only database: {metrics}"
    );
    // The lanes holding queued renewals did not move, and said so: an age past any batch's
    // duration (until the leases lapsed, ADR 0016, and the consumer gave the commands back).
    assert!(
        oldest_lane >= 2.0,
        "a lane held through the outage showed its age: {oldest_lane} s"
    );
    set_read_only(&stack, false).await;
    eventually("every queued renewal to be applied", 60, || async {
        (stack.event_count().await == 3 + 2 * sent.len() as i64).then_some(())
    })
    .await;
    for body in &sent {
        assert_eq!(
            code(&stack.callback(body).await),
            "000000",
            "the retry gets the stored answer"
        );
    }
    let metrics = stack.processor_metrics().await;
    assert!(
        !metrics.contains("licensing_processor_dead_letters_total{"),
        "nothing dead-lettered: {metrics}"
    );
    eventually("every lane to be idle again", 30, || async {
        let ages = samples(
            &stack.processor_metrics().await,
            "licensing_processor_lane_age_seconds",
        );
        (!ages.is_empty() && ages.iter().all(|age| *age == 0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_ingress_opens_its_public_port_only_once_the_broker_link_is_up() {
    let mut stack = Stack::start(&[]).await;
    stack.ingress = None;
    let (broker, public, internal) = (free_port(), free_port(), free_port());
    let mut env = stack.env.clone();
    env.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "LICENSING_AMQP_URL" | "LICENSING_INGRESS_ADDR" | "LICENSING_INTERNAL_ADDR"
        )
    });
    env.push((
        "LICENSING_AMQP_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{broker}/%2f"),
    ));
    env.push((
        "LICENSING_INGRESS_ADDR".into(),
        format!("127.0.0.1:{public}"),
    ));
    env.push((
        "LICENSING_INTERNAL_ADDR".into(),
        format!("127.0.0.1:{internal}"),
    ));
    let starting = std::thread::spawn(move || Service::start("licensing-ingress", &env));
    let why = eventually("the ingress to say it is not ready", 30, || async {
        let answer = stack
            .http
            .get(format!("http://127.0.0.1:{internal}/readyz"))
            .send()
            .await
            .ok()?;
        (answer.status() == 503).then_some(answer.text().await.unwrap())
    })
    .await;
    assert!(why.contains("broker_link"), "{why}");
    assert!(
        TcpStream::connect(("127.0.0.1", public)).await.is_err(),
        "the public port is closed while there is no broker link"
    );
    let _relay = Relay::on(broker);
    stack.ingress = Some(starting.join().unwrap());
    // The very first callback is handed over, never answered 000005.
    assert_eq!(
        code(&stack.callback(&status("PL710", "FREEZE")).await),
        "000000"
    );
}

#[tokio::test]
async fn an_ingress_terminated_under_load_answers_every_request_it_accepted() {
    let mut stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "1500")]).await;
    let url = stack.callback_url();
    // A connection per request: an idle kept-alive connection closed at shutdown would fail a
    // request that the server never received, which says nothing about the ingress.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..150 {
        let body = renew(
            &format!("PL72{:02}", i % 20),
            &format!("CS72{i:03}"),
            "20300101000000",
            false,
        );
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move {
            let sent = http
                .post(format!("{url}?{}", fresh_query(KEY, &body)))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => Ok(response
                    .json::<serde_json::Value>()
                    .await
                    .map(|v| code(&v).to_owned())
                    .map_err(|e| e.to_string())),
                // Refused before it was accepted: the marketplace retries it.
                Err(e) if e.is_connect() => Err(()),
                Err(e) => Ok(Err(e.to_string())),
            };
            (body, outcome)
        });
        if i == 60 {
            eventually("some renewals to be applied", 30, || async {
                (stack.event_count().await > 10).then_some(())
            })
            .await;
            stack.ingress.as_ref().unwrap().signal("TERM");
        }
    }
    let mut answered = Vec::new();
    let mut unanswered = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (body, outcome) = result.unwrap();
        match outcome {
            Ok(Ok(code)) => {
                assert!(code == "000000" || code == "000004", "{code}");
                answered.push((body, code));
            }
            // Reset in the listen backlog as the listener closed, or cut: told apart below.
            Ok(Err(_)) => unanswered.push(body),
            Err(()) => {}
        }
    }
    let status = stack.ingress.as_mut().unwrap().wait_exit(20);
    assert!(status.success(), "{status}");
    assert!(answered.len() > 10, "{} answered", answered.len());
    let order_of = |body: &str| {
        body.split("\"orderId\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned()
    };
    let client = stack.store.client().await.unwrap();
    let count = |order: String| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM events WHERE event_type = 'renewed' AND payload->>'order_id' = $1",
                    &[&order],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    // Everything answered is applied once (000000 at once, 000004 soon after).
    for (body, _) in &answered {
        let order = order_of(body);
        eventually(&format!("{order} to be applied"), 30, || async {
            (count(order.clone()).await == 1).then_some(())
        })
        .await;
    }
    // A request without an answer was never handed over: the ingress never cuts one it took.
    for body in &unanswered {
        assert_eq!(
            count(order_of(body)).await,
            0,
            "handed over but not answered: {body}"
        );
    }
}

/// Opens a connection and sends a callback's headers announcing `length` bytes of body.
async fn announce(address: &str, length: usize) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /koogallery/license?signature=00&timestamp=0&nonce=slow HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads an HTTP answer to the end of its JSON body; returns its text.
async fn answer_of(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let n = stream.read(&mut buffer).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buffer[..n]);
        if text.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn a_body_shorter_than_announced_is_answered_when_the_body_timeout_expires() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start(&[("LICENSING_BODY_TIMEOUT_MS", "1000")]).await;
    let address = stack.public_addr();
    let mut stream = announce(&address, 500).await;
    stream.write_all(b"{\"activity\":").await.unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), answer_of(&mut stream))
        .await
        .expect("answered, not held open");
    assert!(answer.contains("\"resultCode\":\"000002\""), "{answer}");
    assert!(answer.contains("did not arrive within 1000 ms"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn five_hundred_slow_bodies_do_not_delay_valid_callbacks() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start(&[("LICENSING_BODY_TIMEOUT_MS", "2000")]).await;
    let address = stack.public_addr();
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(announce(&address, 1000).await);
    }
    // They dribble a byte each while valid callbacks come in.
    let dribble = tokio::spawn(async move {
        for _ in 0..10 {
            for stream in &mut slow {
                let _ = stream.write_all(b" ").await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    for i in 0..10 {
        let started = Instant::now();
        let answer = stack.callback(&status(&format!("PL76{i}"), "FREEZE")).await;
        assert_eq!(code(&answer), "000000", "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a valid callback waited {:?}",
            started.elapsed()
        );
    }
    let mut slow = dribble.await.unwrap();
    // Each slow one is answered 000002 once its body time is up.
    for stream in slow.iter_mut().take(20) {
        let answer = tokio::time::timeout(Duration::from_secs(10), answer_of(stream))
            .await
            .expect("answered");
        assert!(answer.contains("\"resultCode\":\"000002\""), "{answer}");
    }
}

#[tokio::test]
async fn the_processor_and_the_projector_are_not_ready_while_their_broker_link_is_down() {
    let mut relay = Relay::start().await;
    let port = relay.port;
    let mut stack = Stack::start(&[]).await;
    stack.processor = None;
    stack.env.retain(|(k, _)| k != "LICENSING_AMQP_URL");
    let direct = amqp_url();
    stack.env.push((
        "LICENSING_AMQP_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    ));
    stack.start_processor();
    stack.start_projector("http://127.0.0.1:9");
    let readyz = [
        format!(
            "http://{}/readyz",
            stack.processor.as_ref().unwrap().ready["ops"]
                .as_str()
                .unwrap()
        ),
        stack.query_url("/readyz"),
    ];
    let status_of = |url: String| {
        let http = stack.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for url in &readyz {
        eventually(&format!("{url} ready"), 30, || async {
            (status_of(url.clone()).await.0 == 200).then_some(())
        })
        .await;
    }
    relay.cut();
    // Each names its broker-bound task (the projector has two; either may notice first).
    for (url, task) in readyz.iter().zip(["consumer", "outbound_worker"]) {
        eventually(&format!("{url} not ready, naming {task}"), 30, || async {
            let (status, text) = status_of(url.clone()).await;
            (status == 503 && text.contains(task)).then_some(())
        })
        .await;
    }
    let _relay = Relay::on(port);
    for url in &readyz {
        eventually(&format!("{url} ready again"), 30, || async {
            (status_of(url.clone()).await.0 == 200).then_some(())
        })
        .await;
    }
    // And the pipeline works again through the restored link.
    stack.env.retain(|(k, _)| k != "LICENSING_AMQP_URL");
    stack.env.push(("LICENSING_AMQP_URL".into(), direct));
    assert_eq!(
        code(&stack.callback(&status("PL780", "FREEZE")).await),
        "000000"
    );
}

#[tokio::test]
async fn a_lane_held_when_the_broker_link_drops_reads_idle_while_the_link_stays_down() {
    let mut relay = Relay::start().await;
    let port = relay.port;
    let mut stack = Stack::start(&[("LICENSING_REPLY_DEADLINE_MS", "500")]).await;
    // The processor alone reaches RabbitMQ through the relay, and gives up on a lock after 300 ms.
    stack.processor = None;
    let database = format!("{}?options=-c%20lock_timeout%3D300", stack.db.url);
    stack
        .env
        .retain(|(k, _)| k != "LICENSING_AMQP_URL" && k != "LICENSING_DATABASE_URL");
    stack.env.push((
        "LICENSING_AMQP_URL".into(),
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    ));
    stack.env.push(("LICENSING_DATABASE_URL".into(), database));
    stack.start_processor();
    let readyz = format!(
        "http://{}/readyz",
        stack.processor.as_ref().unwrap().ready["ops"]
            .as_str()
            .unwrap()
    );
    let ready = || {
        let (http, url) = (stack.http.clone(), readyz.clone());
        async move { http.get(url).send().await.unwrap().status().as_u16() == 200 }
    };
    eventually("the processor to be ready", 30, || async {
        ready().await.then_some(())
    })
    .await;
    // Another session holds version 1 of PLHELD's stream, uncommitted: the append of its renewal
    // waits for that lock, times out, and is tried again: its lane is held.
    let mut holder = stack.store.client().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(HOLD_FIRST_VERSION, &[&"license-PLHELD"])
        .await
        .unwrap();
    let held = renew("PLHELD", "CSHELD", "20301231235959", false);
    assert_eq!(code(&stack.callback(&held).await), "000004");
    let ages = || async {
        samples(
            &stack.processor_metrics().await,
            "licensing_processor_lane_age_seconds",
        )
    };
    assert_eq!(ages().await.len(), 2, "two lanes by default (ADR 0008)");
    eventually("the held lane to show its age", 30, || async {
        ages().await.iter().any(|age| *age >= 2.0).then_some(())
    })
    .await;

    // The broker link drops and stays down: the consumer is gone, and what its lanes held is back
    // in the queue, so no lane is held any more, long before any new consumer could start.
    relay.cut();
    eventually("the processor to notice the link is down", 30, || async {
        (!ready().await).then_some(())
    })
    .await;
    eventually("every lane idle while the link is down", 20, || async {
        let ages = ages().await;
        (!ages.is_empty() && ages.iter().all(|age| *age == 0.0)).then_some(())
    })
    .await;

    // The link and the lock come back: the renewal is applied once.
    let _relay = Relay::on(port);
    tx.rollback().await.unwrap();
    eventually("the held renewal to be applied", 60, || async {
        (stack
            .event_types("license-PLHELD")
            .await
            .contains(&"renewed".to_owned()))
        .then_some(())
    })
    .await;
    assert_eq!(code(&stack.callback(&held).await), "000000");
}

/// Reads until the peer closes the connection; returns what arrived.
async fn until_closed(stream: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    let mut buffer = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[tokio::test]
async fn unfinished_headers_and_idle_connections_are_closed_by_their_timeouts() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start(&[
        // Longer than the default (2,000 ms), so that the close below proves the setting took
        // effect, and long enough that a complete request is never refused on a loaded machine
        // (a 500 ms setting let one complete GET be answered 408 when the server's worker was
        // scheduled late).
        ("LICENSING_HEADER_TIMEOUT_MS", "3000"),
        ("LICENSING_KEEP_ALIVE_SECONDS", "1"),
    ])
    .await;
    let address = stack.public_addr();

    // Headers that never end: the connection is closed once the header timeout expires, not
    // before and not much after.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"POST /koogallery/license HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), until_closed(&mut stream))
        .await
        .expect("closed, not held open");
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(2500) && closed_after < Duration::from_secs(7),
        "closed after {closed_after:?}"
    );

    // A kept-alive connection that stays idle is closed after the keep-alive time.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let seen = tokio::time::timeout(Duration::from_secs(10), until_closed(&mut stream))
        .await
        .expect("closed after the keep-alive time");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}
