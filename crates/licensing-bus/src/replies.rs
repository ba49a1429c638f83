//! Waiting for answers: a private reply queue and a table of pending requests by correlation id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::bus::{Bus, BusError};

/// The answers to this process's requests.
#[derive(Debug, Clone)]
pub struct Replies {
    queue: String,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>,
}

/// A request waiting for its answer.
#[derive(Debug)]
pub struct Waiting {
    correlation_id: String,
    receiver: oneshot::Receiver<Vec<u8>>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>,
}

impl Replies {
    /// Declares a private reply queue on `bus` and starts dispatching its messages. The returned
    /// task ends when the connection does.
    pub async fn start(bus: &Bus) -> Result<(Self, tokio::task::JoinHandle<()>), BusError> {
        let name = format!(
            "{}licensing.replies.{}",
            bus.prefix(),
            uuid::Uuid::new_v4().simple()
        );
        let queue = bus.declare_private_queue(&name).await?;
        let mut incoming = bus.consume(&queue, 200, true).await?;
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let dispatch = pending.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = incoming.next().await {
                let Ok(message) = message else { break };
                let Some(id) = message.correlation_id.clone() else {
                    continue;
                };
                let waiter = dispatch
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(message.body);
                }
            }
            tracing::warn!("the reply consumer ended");
        });
        Ok((Self { queue, pending }, task))
    }

    /// The queue to name in `reply_to`.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Registers a request before it is published (the answer may be faster than the confirm).
    pub fn expect(&self, correlation_id: &str) -> Waiting {
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(correlation_id.to_owned(), sender);
        Waiting {
            correlation_id: correlation_id.to_owned(),
            receiver,
            pending: self.pending.clone(),
        }
    }
}

impl Waiting {
    /// The answer, or `None` after `deadline`.
    pub async fn wait(mut self, deadline: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(deadline, &mut self.receiver)
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.correlation_id);
    }
}
