//! The ingress's link to the broker: kept open by `licensing_runtime::supervise`, replaced when
//! it breaks. While
//! there is none, requests fail at once (`000005`, HTTP 503) instead of hanging.

use std::sync::{Arc, RwLock};

use licensing_bus::{Bus, BusConfig, Replies};

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

    /// Connects, serves the link until the connection or the reply consumer ends (an error, so
    /// that the supervisor reconnects with backoff) or `task` is cancelled.
    pub async fn serve(
        &self,
        config: BusConfig,
        task: licensing_runtime::Task,
    ) -> Result<(), licensing_bus::BusError> {
        let bus = Bus::connect(config).await?;
        let (replies, consumer) = match Replies::start(&bus).await {
            Ok(started) => started,
            Err(e) => {
                bus.close().await;
                return Err(e);
            }
        };
        let link = Arc::new(Link { bus, replies });
        tracing::info!("connected to the broker");
        self.set(Some(link.clone()));
        task.up();
        let result = tokio::select! {
            () = task.cancel.cancelled() => Ok(()),
            _ = consumer => Err(licensing_bus::BusError::Unavailable("the reply consumer ended".into())),
            () = link.bus.closed() => Err(licensing_bus::BusError::Unavailable("the broker connection was lost".into())),
        };
        self.set(None);
        link.bus.close().await;
        result
    }
}
