//! The bus against the real RabbitMQ, each test under a random prefix.

use std::time::Duration;

use licensing_bus::{Bus, BusConfig, BusError, FAILURE_HEADER, Outgoing, QueueType, Replies};

fn amqp_url() -> String {
    std::env::var("LICENSING_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn config(queue_type: QueueType) -> BusConfig {
    let mut config = BusConfig::new(amqp_url());
    config.prefix = format!("test-{}.", uuid::Uuid::new_v4().simple());
    config.queue_type = queue_type;
    config
}

async fn next(stream: &mut licensing_bus::IncomingStream) -> licensing_bus::Incoming {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a message within 10 s")
        .expect("the consumer is open")
        .expect("a delivery")
}

#[tokio::test]
async fn commands_are_confirmed_consumed_acked_requeued_and_dead_lettered() {
    for queue_type in [QueueType::Quorum, QueueType::Classic] {
        let bus = Bus::connect(config(queue_type)).await.unwrap();
        bus.declare_topology()
            .await
            .expect("declaring again is idempotent");
        let mut commands = bus.consume_commands(0, 10).await.unwrap();

        bus.publish_command(
            "L1",
            b"{\"n\":1}",
            "m1".into(),
            "c1".into(),
            Some("replies".into()),
            None,
        )
        .await
        .unwrap();
        let first = next(&mut commands).await;
        assert_eq!(first.body, b"{\"n\":1}");
        assert_eq!(
            (
                first.message_id.as_deref(),
                first.correlation_id.as_deref(),
                first.reply_to.as_deref()
            ),
            (Some("m1"), Some("c1"), Some("replies"))
        );
        assert!(!first.redelivered);
        first.requeue().await.unwrap();
        let again = next(&mut commands).await;
        assert!(
            again.redelivered,
            "a requeued message comes back marked as redelivered"
        );
        bus.dead_letter(&again, "undecodable: expected value at line 1")
            .await
            .unwrap();

        let mut dead = bus
            .consume(&bus.names().dead_letter_queue.clone(), 10, false)
            .await
            .unwrap();
        let parked = next(&mut dead).await;
        assert_eq!(parked.body, b"{\"n\":1}");
        assert_eq!(
            parked.header(FAILURE_HEADER),
            Some("undecodable: expected value at line 1")
        );
        parked.ack().await.unwrap();

        bus.publish_command("L1", b"{\"n\":2}", "m2".into(), "c2".into(), None, None)
            .await
            .unwrap();
        let second = next(&mut commands).await;
        assert_eq!(
            second.message_id.as_deref(),
            Some("m2"),
            "the dead-lettered one is gone from the queue"
        );
        second.ack().await.unwrap();
        bus.delete_topology().await.unwrap();
        bus.close().await;
    }
}

#[tokio::test]
async fn an_unroutable_message_is_refused_not_lost_silently() {
    let bus = Bus::connect(config(QueueType::Classic)).await.unwrap();
    let events = bus.names().events_exchange.clone();
    let result = bus
        .publish(Outgoing {
            exchange: &events,
            routing_key: "license.nobody_listens",
            body: b"{}",
            message_id: "e1".into(),
            correlation_id: None,
            reply_to: None,
            headers: Vec::new(),
        })
        .await;
    assert!(matches!(result, Err(BusError::Refused(_))), "{result:?}");
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn batches_of_events_handed_over_before_their_confirms_arrive_whole_and_in_order() {
    let config = config(QueueType::Classic);
    let queue = format!("{}licensing.subscriber.order", config.prefix);
    let bus = Bus::connect(config).await.unwrap();
    let mut subscriber = bus
        .subscribe_events_durable("order", "license.#", 1000)
        .await
        .unwrap();
    let bodies: Vec<String> = (0..600).map(|i| format!("{{\"n\":{i}}}")).collect();
    let messages: Vec<licensing_bus::EventMessage<'_>> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| licensing_bus::EventMessage {
            routing_key: if i % 2 == 0 { "license.a" } else { "license.b" },
            body: body.as_bytes(),
            message_id: format!("e{i}"),
            trace: None,
        })
        .collect();
    // Three batches in flight before any confirm is awaited.
    let mut pending = Vec::new();
    for batch in messages.chunks(200) {
        pending.push(bus.send_events(batch).await.unwrap());
    }
    for confirms in pending {
        confirms.settled().await.unwrap();
    }
    for (i, body) in bodies.iter().enumerate() {
        let event = next(&mut subscriber).await;
        assert_eq!(event.message_id.as_deref(), Some(format!("e{i}").as_str()));
        assert_eq!(event.body, body.as_bytes());
        event.ack().await.unwrap();
    }
    bus.delete_queue(&queue).await.unwrap();
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn requests_get_their_replies_by_correlation_id() {
    let bus = Bus::connect(config(QueueType::Classic)).await.unwrap();
    let (replies, _task) = Replies::start(&bus).await.unwrap();
    let waiting_a = replies.expect("a");
    let waiting_b = replies.expect("b");
    for (id, body) in [
        ("b", b"B".as_slice()),
        ("a", b"A".as_slice()),
        ("stray", b"?".as_slice()),
    ] {
        bus.publish_reply(replies.queue(), id, body).await.unwrap();
    }
    assert_eq!(
        waiting_a.wait(Duration::from_secs(5)).await.as_deref(),
        Some(b"A".as_slice())
    );
    assert_eq!(
        waiting_b.wait(Duration::from_secs(5)).await.as_deref(),
        Some(b"B".as_slice())
    );
    assert_eq!(
        replies
            .expect("never")
            .wait(Duration::from_millis(100))
            .await,
        None
    );
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast() {
    let mut config = config(QueueType::Classic);
    config.url = "amqp://guest:guest@127.0.0.1:1/%2f".into();
    let started = std::time::Instant::now();
    let error = Bus::connect(config).await.unwrap_err();
    assert!(matches!(error, BusError::Unavailable(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_consumer_whose_connection_is_gone_stops_waiting() {
    let settings = config(QueueType::Classic);
    let bus = Bus::connect(settings.clone()).await.unwrap();
    let mut commands = bus.consume_commands(0, 10).await.unwrap();
    let waiting = tokio::spawn(async move {
        let ended = tokio::time::timeout(Duration::from_secs(5), commands.next()).await;
        matches!(ended, Ok(None | Some(Err(_))))
    });
    bus.close().await;
    assert!(
        waiting.await.unwrap(),
        "the stream ends or fails instead of waiting for messages that cannot come"
    );
    let fresh = Bus::connect(settings).await.unwrap();
    fresh.delete_topology().await.unwrap();
}

#[tokio::test]
async fn commands_go_to_their_license_shard_and_a_smaller_shard_count_is_refused() {
    let mut four = config(QueueType::Classic);
    four.shards = 4;
    let bus = Bus::connect(four.clone()).await.unwrap();
    // Each license's commands meet in the queue of its shard.
    let mut shards = Vec::new();
    for shard in 0..4 {
        shards.push(bus.consume_commands(shard, 10).await.unwrap());
    }
    for license in ["PL1", "PL2", "PL3", "PL4", "PL5"] {
        bus.publish_command(
            license,
            license.as_bytes(),
            license.into(),
            "c".into(),
            None,
            None,
        )
        .await
        .unwrap();
        let shard = usize::from(licensing_bus::shard_of(license, 4));
        let message = next(&mut shards[shard]).await;
        assert_eq!(message.body, license.as_bytes());
        message.ack().await.unwrap();
    }
    // A service with fewer shards would publish where nobody reads the rest: it is refused, by name.
    let mut two = four.clone();
    two.shards = 2;
    let refused = Bus::connect(two).await.unwrap_err();
    assert!(matches!(refused, BusError::Refused(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("LICENSING_SHARDS=2"),
        "{refused}"
    );
    // More shards is fine for the broker (the processors compare their counts in PostgreSQL),
    // and then the four-shard service's check refuses in turn.
    let mut eight = four.clone();
    eight.shards = 8;
    let larger = Bus::connect(eight).await.unwrap();
    assert!(bus.check_shard_count().await.is_err());
    larger.delete_topology().await.unwrap();
    bus.close().await;
}
