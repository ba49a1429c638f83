//! Long-running tasks that never stop silently: [`supervise`] restarts a task that fails (or
//! panics, or ends on its own) after a capped, jittered [`Backoff`], counts and logs each restart,
//! and keeps [`Health`] true, so that `/readyz` names every task that is not up.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Capped exponential backoff with jitter: the one retry delay of the backend.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles on each [`Backoff::next_delay`], never above `cap`.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            next: initial,
        }
    }

    /// The backoff of the services' reconnect loops: 200 ms doubling up to 5 s.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// The next delay: the current step with up to 25 % jitter taken off (so that many clients
    /// do not retry in step), then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.cap);
        let jitter = step.mul_f64(0.25 * unit_random());
        step - jitter
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps for the next delay, or until `cancel`. Returns `false` when cancelled.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// A number in [0, 1) that differs between calls and processes; good enough for jitter.
fn unit_random() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: String,
}

/// Whether each supervised task (and each other named condition) is up; shared by the tasks and
/// the `/readyz` check.
#[derive(Debug, Clone)]
pub struct Health {
    states: Arc<Mutex<BTreeMap<String, Option<&'static str>>>>,
    restarts: Family<TaskLabel, Counter>,
}

impl Health {
    /// A health board whose restarts are counted in `licensing_task_restarts_total{task}`.
    pub fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let health = Self {
            states: Arc::default(),
            restarts: Family::default(),
        };
        registry.lock().unwrap_or_else(|p| p.into_inner()).register(
            "licensing_task_restarts",
            "Restarts of a supervised task after it failed",
            health.restarts.clone(),
        );
        health
    }

    /// Marks `name` up.
    pub fn up(&self, name: &str) {
        self.set(name, None);
    }

    /// Marks `name` down, with a short reason of our own words (never an error's text, which may
    /// hold a database's message: `/readyz` shows it).
    pub fn down(&self, name: &str, reason: &'static str) {
        self.set(name, Some(reason));
    }

    fn set(&self, name: &str, state: Option<&'static str>) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get_mut(name) {
            Some(current) => *current = state,
            None => {
                states.insert(name.to_owned(), state);
            }
        }
    }

    /// `Ok` when everything is up, else every name that is not, with its reason.
    pub fn check(&self) -> Result<(), String> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let down: Vec<String> = states
            .iter()
            .filter_map(|(name, state)| state.map(|reason| format!("{name} ({reason})")))
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(down.join(", "))
        }
    }
}

/// The text a caught panic carries (empty when it carries none).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// A start-up step (migrations, say) run until it succeeds: a failure `retryable` accepts is logged
/// and waited out with the reconnect backoff, with `name` shown down on `health` meanwhile; any
/// other failure is returned. `Ok(None)` when `cancel` fires first.
pub async fn until_done<T, E, F, Fut>(
    health: &Health,
    name: &'static str,
    cancel: &CancellationToken,
    mut step: F,
    retryable: impl Fn(&E) -> bool,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    health.down(name, "starting");
    let mut backoff = Backoff::reconnect();
    loop {
        match step().await {
            Ok(value) => {
                health.up(name);
                return Ok(Some(value));
            }
            Err(e) if retryable(&e) => {
                tracing::warn!(step = name, error = %e, "cannot start yet, retrying");
                if !backoff.wait(cancel).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What a supervised task gets: its name, the health board and the shutdown token. The task calls
/// [`Task::up`] once it does its work (connected, caught up…), which also resets its backoff.
#[derive(Debug, Clone)]
pub struct Task {
    name: &'static str,
    health: Health,
    /// Cancelled at shutdown: the task should return `Ok(())` soon after.
    pub cancel: CancellationToken,
    was_up: Arc<std::sync::atomic::AtomicBool>,
}

impl Task {
    /// The task works.
    pub fn up(&self) {
        self.was_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.health.up(self.name);
    }
}

/// Runs `run` as the task `name` until `cancel`: when it fails, panics or returns before
/// `cancel`, the failure is logged, counted in `licensing_task_restarts_total{task}` and shown by
/// `/readyz`, and the task is started again after a backoff (reset each time the task reported
/// itself up). The task is down until it calls [`Task::up`].
pub fn supervise<F, Fut, E>(
    health: &Health,
    name: &'static str,
    cancel: CancellationToken,
    mut run: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut(Task) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    health.down(name, "starting");
    let health = health.clone();
    tokio::spawn(async move {
        let mut backoff = Backoff::reconnect();
        loop {
            let task = Task {
                name,
                health: health.clone(),
                cancel: cancel.clone(),
                was_up: Arc::default(),
            };
            let was_up = task.was_up.clone();
            let outcome = std::panic::AssertUnwindSafe(run(task)).catch_unwind().await;
            if cancel.is_cancelled() {
                health.down(name, "stopped");
                if let Ok(Err(e)) = outcome {
                    tracing::info!(task = name, error = %e, "task ended at shutdown");
                }
                return;
            }
            if was_up.load(std::sync::atomic::Ordering::Relaxed) {
                backoff.reset();
            }
            health.down(name, "restarting");
            health
                .restarts
                .get_or_create(&TaskLabel {
                    task: name.to_owned(),
                })
                .inc();
            let delay = backoff.next_delay();
            match outcome {
                Ok(Ok(())) => {
                    tracing::error!(task = name, retry_in = ?delay, "task ended on its own, restarting")
                }
                Ok(Err(e)) => {
                    tracing::error!(task = name, error = %e, retry_in = ?delay, "task failed, restarting")
                }
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    tracing::error!(task = name, panic = %what, retry_in = ?delay, "task panicked, restarting")
                }
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    health.down(name, "stopped");
                    return;
                }
                () = tokio::time::sleep(delay) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below_a_quarter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let steps: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let nominal = [100, 200, 350, 350, 350];
        for (step, nominal) in steps.iter().zip(nominal) {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *step <= nominal && *step >= nominal.mul_f64(0.75),
                "{step:?} vs {nominal:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_failing_task_is_restarted_counted_and_reported_until_it_is_up() {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let health = Health::register(&registry);
        let cancel = CancellationToken::new();
        let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = attempts.clone();
        let handle = supervise(&health, "flaky", cancel.clone(), move |task| {
            let attempt = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                match attempt {
                    0 => Err("database gone".to_owned()),
                    1 => panic!("a bug"),
                    _ => {
                        task.up();
                        task.cancel.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        assert_eq!(health.check(), Err("flaky (starting)".to_owned()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while health.check().is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never up: {:?}",
                health.check()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        assert!(
            text.contains("licensing_task_restarts_total{task=\"flaky\"} 2"),
            "{text}"
        );
        cancel.cancel();
        handle.await.unwrap();
        assert_eq!(health.check(), Err("flaky (stopped)".to_owned()));
    }
}
