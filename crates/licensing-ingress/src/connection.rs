//! The ingress's link to the broker: kept open by a supervisor, replaced when it breaks. While
//! there is none, requests fail at once (`000005`, HTTP 503) instead of hanging.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use licensing_bus::{Bus, BusConfig, Replies};
use licensing_runtime::CancellationToken;

/// A connected bus and its reply consumer.
#[derive(Debug)]
pub struct Link {
    /// The bus.
    pub bus: Bus,
    /// Answers to this process's commands.
    pub replies: Replies,
}

/// The current link, if any.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    current: Arc<RwLock<Option<Arc<Link>>>>,
}

impl Connection {
    /// The link, if connected.
    pub fn get(&self) -> Option<Arc<Link>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current
            .as_ref()
            .filter(|link| link.bus.is_connected())
            .cloned()
    }

    fn set(&self, link: Option<Arc<Link>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = link;
    }

    /// Connects, and reconnects whenever the connection or the reply consumer ends, until `cancel`.
    pub async fn supervise(self, config: BusConfig, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !cancel.is_cancelled() {
            let attempt = async {
                let bus = Bus::connect(config.clone()).await?;
                let (replies, consumer) = Replies::start(&bus).await?;
                Ok::<_, licensing_bus::BusError>((Arc::new(Link { bus, replies }), consumer))
            };
            match attempt.await {
                Ok((link, consumer)) => {
                    tracing::info!("connected to the broker");
                    backoff = Duration::from_millis(200);
                    self.set(Some(link.clone()));
                    let watch = async {
                        while link.bus.is_connected() {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    };
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        _ = consumer => tracing::warn!("reply consumer ended"),
                        () = watch => tracing::warn!("broker connection lost"),
                    }
                    self.set(None);
                    link.bus.close().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "broker unavailable");
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
