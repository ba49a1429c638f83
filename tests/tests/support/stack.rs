//! The running system of one test: its database, queue prefix and services, and what a test asks of them.

use super::*;

/// The whole pipeline on its own database and RabbitMQ prefix.
pub struct Stack {
    pub db: TestDatabase,
    pub store: Store,
    pub prefix: String,
    pub env: Vec<(String, String)>,
    pub ingress: Option<Service>,
    pub processor: Option<Service>,
    pub projector: Option<Service>,
    pub http: reqwest::Client,
}

impl Stack {
    /// Starts both services with the default settings plus `extra`.
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create().await;
        let prefix = format!("systest-{}.", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("LICENSING_DATABASE_URL", db.url.as_str()),
            ("LICENSING_AMQP_URL", &amqp_url()),
            ("LICENSING_AMQP_PREFIX", &prefix),
            ("LICENSING_AMQP_QUEUE_TYPE", "classic"),
            ("LICENSING_CALLBACK_KEYS", KEY),
            ("LICENSING_API_TOKENS", TOKEN),
            ("LICENSING_INGRESS_ADDR", "127.0.0.1:0"),
            ("LICENSING_INTERNAL_ADDR", "127.0.0.1:0"),
            ("LICENSING_PROCESSOR_ADDR", "127.0.0.1:0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        let store = db.store();
        let mut stack = Self {
            db,
            store,
            prefix,
            env,
            ingress: None,
            processor: None,
            projector: None,
            http: reqwest::Client::new(),
        };
        stack.start_processor();
        stack.start_ingress();
        stack.wait_ingress_ready().await;
        stack
    }

    pub fn start_processor(&mut self) {
        self.processor = Some(Service::start("licensing-processor", &self.env));
    }

    /// Starts the projector, calling the marketplace at `marketplace_url` with the simulator's AK/SK.
    pub fn start_projector(&mut self, marketplace_url: &str) {
        self.start_projector_with(marketplace_url, &[]);
    }

    /// Starts the projector with extra settings.
    pub fn start_projector_with(&mut self, marketplace_url: &str, extra: &[(&str, &str)]) {
        let env = self.projector_env(marketplace_url, extra);
        self.projector = Some(Service::start("licensing-projector", &env));
    }

    /// A projector's settings: the stack's, the simulator at `marketplace_url`, and `extra`.
    pub fn projector_env(
        &self,
        marketplace_url: &str,
        extra: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.extend(
            [
                ("LICENSING_KOOGALLERY_URL", marketplace_url),
                ("LICENSING_KOOGALLERY_AK", SIM_AK),
                ("LICENSING_KOOGALLERY_SK", SIM_SK),
                ("LICENSING_QUERY_ADDR", "127.0.0.1:0"),
                ("LICENSING_CONSOLE_SECRET", CONSOLE_KEY),
                ("LICENSING_OUTBOUND_RETRY_BASE_MS", "200"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push(((*k).to_owned(), (*v).to_owned()));
        }
        env
    }

    pub fn query_url(&self, path: &str) -> String {
        let ready = &self.projector.as_ref().expect("the projector runs").ready;
        format!("http://{}{path}", ready["query"].as_str().unwrap())
    }

    pub fn start_ingress(&mut self) {
        self.ingress = Some(Service::start("licensing-ingress", &self.env));
    }

    fn ingress_ready(&self, field: &str) -> String {
        let ready = &self.ingress.as_ref().expect("the ingress runs").ready;
        ready[field]
            .as_str()
            .unwrap_or_else(|| panic!("ready event has {field}: {ready}"))
            .to_owned()
    }

    /// The public listener's address, `host:port`.
    pub fn public_addr(&self) -> String {
        self.ingress_ready("public")
    }

    /// Outbound jobs of a license still owed.
    pub async fn outbound_jobs(&self, license: &str) -> i64 {
        let client = self.store.client().await.unwrap();
        client
            .query_one(
                "SELECT count(*) FROM outbound_jobs WHERE license = $1",
                &[&license],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub fn callback_url(&self) -> String {
        format!("http://{}/koogallery/license", self.ingress_ready("public"))
    }

    /// Runs one of the service binaries as a command-line tool on the stack's database, with only
    /// `env` besides; returns its exit code and its standard output and error together.
    pub fn tool(&self, binary: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let output = std::process::Command::new(binaries().join(binary))
            .args(args)
            .env_clear()
            .env("LICENSING_DATABASE_URL", &self.db.url)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// Asks for a code's activation on the internal API; the HTTP status.
    pub async fn request_activation(&self, license: &str) -> u16 {
        self.http
            .post(self.internal_url(&format!("/v1/licenses/{license}/activation")))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingress_ready("internal"))
    }

    /// Waits until the ingress is connected to the broker.
    pub async fn wait_ingress_ready(&self) {
        let url = self.internal_url("/readyz");
        eventually("the ingress to be ready", 30, || async {
            let response = self.http.get(&url).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }

    /// Signs and posts a callback body; returns the JSON answer (and checks HTTP 200, D1).
    /// `GET` on the query listener with `token` as bearer (none: unauthenticated): the status and
    /// the JSON body (null when it is not JSON).
    pub async fn query(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.query_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// `GET` on the query API with the test token, which must answer 200: its JSON body.
    pub async fn query_ok(&self, path: &str) -> Value {
        let (status, body) = self.query(path, Some(TOKEN)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A license's view (`GET /v1/licenses/{license}`), null when there is none.
    pub async fn view(&self, license: &str) -> Value {
        self.query(&format!("/v1/licenses/{license}"), Some(TOKEN))
            .await
            .1
    }

    /// `POST` of `body` on the internal API with the test token: the status and the JSON body.
    pub async fn internal(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.internal_url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn callback(&self, body: &str) -> Value {
        self.callback_signed(body, &fresh_query(KEY, body), "application/json")
            .await
    }

    /// Posts a body with a given query string and Content-Type.
    pub async fn callback_signed(&self, body: &str, query: &str, content_type: &str) -> Value {
        let response = self
            .http
            .post(format!("{}?{query}", self.callback_url()))
            .header("Content-Type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("the ingress answers");
        assert_eq!(
            response.status(),
            200,
            "callbacks are always answered with HTTP 200"
        );
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/json;charset=UTF-8");
        response.json().await.unwrap()
    }

    /// A gauge's value on the projector's `/metrics` (unlabelled metrics only).
    pub async fn projector_gauge(&self, name: &str) -> Option<f64> {
        let metrics = self.metrics_at(&self.query_url("/metrics")).await?;
        samples(&metrics, name).first().copied()
    }

    /// The processor's `/metrics` page (empty when it does not answer).
    pub async fn processor_metrics(&self) -> String {
        let ops = self.processor.as_ref().expect("a processor runs").ready["ops"]
            .as_str()
            .expect("the processor's ops address")
            .to_owned();
        self.metrics_at(&format!("http://{ops}/metrics"))
            .await
            .unwrap_or_default()
    }

    async fn metrics_at(&self, url: &str) -> Option<String> {
        self.http.get(url).send().await.ok()?.text().await.ok()
    }

    /// Appends to `stream` an event this build cannot read (as if written by a later release):
    /// commands for that license are dead-lettered.
    pub async fn make_unreadable(&self, stream: &str) {
        let unreadable = licensing_store::NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "written_by_a_later_release".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: licensing_store::EventMetadata::default(),
        };
        self.store
            .append(stream, 0, vec![unreadable])
            .await
            .unwrap();
    }

    /// Waits until the processor's keeper has recorded a dead letter that `matches`.
    pub async fn wait_dead_letter(
        &self,
        matches: impl Fn(&licensing_store::StoredDeadLetter) -> bool,
    ) -> licensing_store::StoredDeadLetter {
        eventually("a dead letter to be recorded", 30, || async {
            self.store
                .dead_letters(licensing_store::DeadLetterState::All, None, 100)
                .await
                .ok()?
                .into_iter()
                .find(&matches)
        })
        .await
    }

    /// All events of a stream.
    pub async fn events(&self, stream: &str) -> Vec<RecordedEvent> {
        self.store.load(stream).await.unwrap()
    }

    /// The event types of a stream.
    pub async fn event_types(&self, stream: &str) -> Vec<String> {
        self.events(stream)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Waits (30 s at most) until the stream holds an event of `event_type`.
    pub async fn wait_event(&self, stream: &str, event_type: &str) {
        eventually(&format!("a {event_type} event in {stream}"), 30, || async {
            self.event_types(stream)
                .await
                .iter()
                .any(|t| t == event_type)
                .then_some(())
        })
        .await;
    }

    /// Fails when any running service wrote one of `secrets` to its logs.
    pub fn assert_logs_hold_none_of(&self, secrets: &[&str]) {
        for service in [&self.ingress, &self.processor, &self.projector]
            .into_iter()
            .flatten()
        {
            for secret in secrets {
                let leaks = service.logged(secret);
                assert!(leaks.is_empty(), "a secret in the logs: {leaks:?}");
            }
        }
    }

    /// Every license view as a JSON row, in a stable order (empty before the projector made its
    /// table).
    pub async fn views_snapshot(&self) -> Vec<String> {
        let client = self.store.client().await.unwrap();
        client
            .query(
                "SELECT row_to_json(v)::text FROM license_views v ORDER BY license, sandbox",
                &[],
            )
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }

    /// Whether the projector's view follower and event publisher have handled every event.
    pub async fn projector_caught_up(&self) -> bool {
        let client = self.store.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(max(global_position), 0) FROM events),
                        (SELECT coalesce(min(position), 0) FROM checkpoints
                          WHERE name IN ('license_views', 'event_publisher')),
                        (SELECT count(*) FROM checkpoints
                          WHERE name IN ('license_views', 'event_publisher'))",
                &[],
            )
            .await
            .unwrap();
        let (last, slowest, followers): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        followers == 2 && slowest == last
    }

    /// Waits until the projector has handled every event and owes `license` no call: no call for
    /// it is in flight or can still be made, so the marketplace's requests are final.
    pub async fn outbound_settled(&self, license: &str) {
        eventually(
            &format!("no outbound call owed for {license}"),
            30,
            || async {
                (self.projector_caught_up().await && self.outbound_jobs(license).await == 0)
                    .then_some(())
            },
        )
        .await;
    }

    /// Runs `licensing-projector rebuild` on this stack's database; returns its standard output.
    pub fn rebuild_views(&self) -> String {
        let output = Command::new(binaries().join("licensing-projector"))
            .arg("rebuild")
            .env("LICENSING_DATABASE_URL", &self.db.url)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The number of events in the store.
    pub async fn event_count(&self) -> i64 {
        let client = self.store.client().await.unwrap();
        client
            .query_one("SELECT count(*) FROM events", &[])
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for Stack {
    /// Stops the services, then removes this stack's exchanges and queues from RabbitMQ. A service
    /// that panicked fails the test, even when the system kept working around it.
    fn drop(&mut self) {
        let panics: Vec<String> = [&self.ingress, &self.processor, &self.projector]
            .into_iter()
            .flatten()
            .flat_map(Service::panics)
            .collect();
        self.ingress = None;
        self.processor = None;
        self.projector = None;
        let mut config = licensing_bus::BusConfig::new(amqp_url());
        config.prefix = self.prefix.clone();
        config.queue_type = licensing_bus::QueueType::Classic;
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let bus = licensing_bus::Bus::connect(config).await.ok()?;
                bus.delete_topology().await.ok()?;
                bus.close().await;
                Some(())
            })
        });
        let _ = cleanup.join();
        if !std::thread::panicking() {
            assert!(panics.is_empty(), "a service panicked: {panics:?}");
        }
    }
}

/// Every sample of metric `name` in a Prometheus text page, whatever its labels.
pub fn samples(metrics: &str, name: &str) -> Vec<f64> {
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse().ok()
        })
        .collect()
}
