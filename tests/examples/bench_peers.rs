//! Peers for the pipeline benchmark (scripts/bench-pipeline):
//!
//! ```text
//! bench_peers responder PREFIX        # answers every command at once: the ingress measured alone
//! bench_peers bare ADDR PREFIX        # the baseline: actix-web that publishes each body with a
//!                                     # broker confirm, then answers 000000, nothing else
//! ```

use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use licensing_bus::{Bus, BusConfig, QueueType};

fn config(prefix: &str) -> BusConfig {
    let mut config = BusConfig::new(
        std::env::var("LICENSING_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    );
    config.prefix = prefix.to_owned();
    config.queue_type = QueueType::Classic;
    config
}

const SUCCESS: &[u8] = br#"{"kind":"callback","resultCode":"000000","resultMsg":"success."}"#;

async fn responder(prefix: &str) {
    let bus = Arc::new(Bus::connect(config(prefix)).await.expect("broker"));
    let mut commands = bus.consume_commands(0, 500).await.expect("consume");
    println!("responder ready");
    while let Some(Ok(message)) = commands.next().await {
        let bus = bus.clone();
        tokio::spawn(async move {
            if let (Some(reply_to), Some(correlation_id)) =
                (&message.reply_to, &message.correlation_id)
            {
                let _ = bus.publish_reply(reply_to, correlation_id, SUCCESS).await;
            }
            let _ = message.ack().await;
        });
    }
}

async fn publish(body: web::Bytes, bus: web::Data<Bus>) -> HttpResponse {
    match bus
        .publish_command(
            "",
            &body,
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
            None,
            None,
        )
        .await
    {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/json;charset=UTF-8")
            .body(&br#"{"resultCode":"000000","resultMsg":"success."}"#[..]),
        Err(_) => HttpResponse::Ok()
            .body(&br#"{"resultCode":"000005","resultMsg":"internal error."}"#[..]),
    }
}

async fn drain(prefix: String) {
    // Keeps the bare server's queue from growing: acknowledges whatever it publishes.
    let bus = Bus::connect(config(&prefix)).await.expect("broker");
    let mut commands = bus.consume_commands(0, 500).await.expect("consume");
    while let Some(Ok(message)) = commands.next().await {
        let _ = message.ack().await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["responder", prefix] => {
            responder(prefix).await;
            Ok(())
        }
        ["bare", addr, prefix] => {
            let bus = web::Data::new(Bus::connect(config(prefix)).await.expect("broker"));
            tokio::spawn(drain((*prefix).to_owned()));
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(bus.clone())
                    .route("/koogallery/license", web::post().to(publish))
            })
            .workers(2)
            .bind(addr)?;
            println!("bare ready");
            server.run().await
        }
        _ => {
            eprintln!("usage: bench_peers responder PREFIX | bench_peers bare ADDR PREFIX");
            std::process::exit(2);
        }
    }
}
