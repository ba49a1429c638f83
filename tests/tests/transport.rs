//! Transport security for real: a second PostgreSQL cluster that accepts TLS only, with a
//! certificate made by the test's own CA, and a TLS listener on the running RabbitMQ. Needs root
//! (to run the cluster as `postgres` and to reach `rabbitmqctl`), as CI has.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use licensing_bus::{Bus, BusConfig};
use licensing_store::{Store, StoreConfig};
use support::*;

fn run(what: &str, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A private CA and a server certificate for `localhost` only (not for `127.0.0.1`), in a
/// directory everyone may read (the test's brokers run as other users).
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("licensing-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            run(
                &format!("openssl {}", args[0]),
                Command::new("openssl").current_dir(&dir).args(args),
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=licensing test CA",
                ],
            ]
            .concat(),
        );
        // A CA of no standing here: trusted by the deployment instead of the server's.
        openssl(
            &[
                &["req", "-x509"][..],
                &ec[..],
                &[
                    "-keyout",
                    "other-ca.key",
                    "-out",
                    "other-ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=another test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        run(
            "chmod",
            Command::new("chmod").args(["-R", "a+rX"]).arg(&dir),
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of its own that accepts TLS connections only; stopped when dropped.
struct TlsPostgres {
    data: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start(certs: &Certificates) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL from Debian packages")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max_by_key(|bin| {
                let version = bin.parent().unwrap().file_name().unwrap().to_string_lossy();
                version.parse::<u32>().unwrap_or(0)
            })
            .expect("an initdb under /usr/lib/postgresql");
        let data = certs.path("pgdata");
        // The key must belong to the server's user and be private to it.
        for (from, to) in [("server.key", "pg.key"), ("server.pem", "pg.pem")] {
            std::fs::copy(certs.path(from), certs.path(to)).unwrap();
        }
        run(
            "chown",
            Command::new("chown")
                .arg("postgres")
                .arg(certs.path("pg.key"))
                .arg(certs.path("pg.pem")),
        );
        run(
            "chmod",
            Command::new("chmod").arg("600").arg(certs.path("pg.key")),
        );
        std::fs::create_dir(&data).unwrap();
        run("chown", Command::new("chown").arg("postgres").arg(&data));
        let as_postgres = |program: &Path| {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        };
        run(
            "initdb",
            as_postgres(&bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(&data),
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = 'localhost'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            data.display(),
            certs.path("pg.pem").display(),
            certs.path("pg.key").display()
        );
        append(&data.join("postgresql.conf"), &conf);
        // TLS only: a plain-text connection finds no matching line and is refused.
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all bound 127.0.0.1/32 scram-sha-256\nhostssl all bound ::1/128 scram-sha-256\n\
             hostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        let pg_ctl = bin.join("pg_ctl");
        run(
            "pg_ctl start",
            as_postgres(&pg_ctl)
                .args(["-w", "-l"])
                .arg(data.join("log"))
                .arg("-D")
                .arg(&data)
                .arg("start"),
        );
        Self { data, pg_ctl, port }
    }

    fn url(&self, host: &str, sslmode: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode={sslmode}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&self.pg_ctl)
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// A TLS listener added to the running RabbitMQ for the test's lifetime.
struct TlsRabbit {
    port: u16,
}

impl TlsRabbit {
    fn start(certs: &Certificates) -> Self {
        let port = free_port();
        let expression = format!(
            "rabbit_networking:start_ssl_listener({port}, [{{cacertfile, \"{}\"}}, \
             {{certfile, \"{}\"}}, {{keyfile, \"{}\"}}], 1).",
            certs.path("ca.pem").display(),
            certs.path("server.pem").display(),
            certs.path("server.key").display()
        );
        run(
            "rabbitmqctl eval start_ssl_listener",
            Command::new("rabbitmqctl").args(["eval", &expression]),
        );
        Self { port }
    }

    fn url(&self) -> String {
        format!("amqps://guest:guest@localhost:{}/%2f", self.port)
    }
}

impl Drop for TlsRabbit {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args([
                "eval",
                &format!("rabbit_networking:stop_tcp_listener({}).", self.port),
            ])
            .output();
    }
}

async fn store_over(url: &str, ca: Option<&Path>) -> Result<Store, String> {
    let mut config = StoreConfig::new(url);
    config.ca_file = ca.map(Path::to_path_buf);
    config.connect_timeout = Duration::from_secs(5);
    let store = Store::connect(&config).map_err(|e| e.to_string())?;
    store.migrate().await.map_err(|e| e.to_string())?;
    Ok(store)
}

#[tokio::test]
#[cfg_attr(
    not(privileged),
    ignore = "needs root: runs a PostgreSQL cluster of its own and rabbitmqctl"
)]
async fn postgres_is_reached_over_verified_tls_and_rabbitmq_over_amqps() {
    assert!(
        is_root(),
        "needs root to run a PostgreSQL cluster and rabbitmqctl"
    );
    let certs = Certificates::make();
    let ca = certs.path("ca.pem");
    let pg = TlsPostgres::start(&certs);

    // verify-full with the private CA: connected, and the session is encrypted.
    let store = store_over(&pg.url("localhost", "verify-full"), Some(&ca))
        .await
        .expect("verify-full with the CA connects");
    let client = store.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the session uses TLS");

    // A password login (SCRAM-SHA-256) bound to the TLS channel: with channel_binding=require
    // the client refuses to authenticate unless the server's certificate is bound into SCRAM
    // (SCRAM-SHA-256-PLUS), which a man in the middle with another certificate cannot forge.
    client
        .batch_execute("CREATE ROLE bound LOGIN PASSWORD 'bound-password-0123456789'")
        .await
        .unwrap();
    let bound_url = pg
        .url("localhost", "verify-full")
        .replace("postgres@", "bound:bound-password-0123456789@")
        + "&channel_binding=require";
    let mut config = StoreConfig::new(bound_url);
    config.ca_file = Some(ca.clone());
    let bound = Store::connect(&config).unwrap();
    let row = bound
        .client()
        .await
        .expect("SCRAM with channel binding over verified TLS")
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "bound");

    // Without the CA the certificate is unknown; with a name it does not cover, verify-full
    // refuses while require (chain only) accepts; plain text is refused by the server.
    let unknown = store_over(&pg.url("localhost", "verify-full"), None)
        .await
        .map(|_| ())
        .expect_err("an unknown CA is refused");
    assert!(unknown.contains("certificate"), "{unknown}");
    let wrong_name = store_over(&pg.url("127.0.0.1", "verify-full"), Some(&ca))
        .await
        .map(|_| ())
        .expect_err("a certificate for another name is refused");
    assert!(wrong_name.contains("certificate"), "{wrong_name}");
    store_over(&pg.url("127.0.0.1", "require"), Some(&ca))
        .await
        .expect("require verifies the chain, not the name");
    store_over(&pg.url("localhost", "disable"), None)
        .await
        .map(|_| ())
        .expect_err("plain text is refused by this cluster");

    // The system's roots (SSL_CERT_FILE here, holding the server's CA as if it were a public
    // one) are trusted only when LICENSING_DATABASE_CA is not set, and then the name is always
    // checked: a chain from a public root proves nothing about which server this is.
    let as_system_root = [("SSL_CERT_FILE", ca.display().to_string())];
    let other_ca = certs.path("other-ca.pem");
    let refused = processor_refused(
        &pg.url("localhost", "verify-ca"),
        Some(&other_ca),
        &as_system_root,
    )
    .await;
    assert!(
        refused.contains("certificate"),
        "verify-ca trusts its CA file alone: {refused}"
    );
    let refused = processor_refused(&pg.url("127.0.0.1", "verify-ca"), None, &as_system_root).await;
    assert!(
        refused.contains("certificate"),
        "the name is checked under the system's roots: {refused}"
    );
    let refused = processor_refused(&pg.url("127.0.0.1", "require"), None, &as_system_root).await;
    assert!(refused.contains("certificate"), "require too: {refused}");

    // amqps with the CA connects; without it the broker's certificate is refused.
    let rabbit = TlsRabbit::start(&certs);
    let mut bus_config = BusConfig::new(rabbit.url());
    bus_config.prefix = format!("systest-{}.", uuid::Uuid::new_v4().simple());
    bus_config.queue_type = licensing_bus::QueueType::Classic;
    bus_config.timeout = Duration::from_secs(5);
    let without_ca = Bus::connect(bus_config.clone()).await;
    assert!(without_ca.is_err(), "an unknown CA is refused by amqps");
    bus_config.ca_pem = Some(std::fs::read_to_string(&ca).unwrap());
    Bus::connect(bus_config)
        .await
        .expect("amqps with the CA connects");

    // The real processor, configured by its environment only, runs over both and is ready.
    let prefix = format!("systest-{}.", uuid::Uuid::new_v4().simple());
    let env: Vec<(String, String)> = [
        ("LICENSING_DATABASE_URL", pg.url("localhost", "verify-full")),
        ("LICENSING_DATABASE_CA", ca.display().to_string()),
        ("LICENSING_AMQP_URL", rabbit.url()),
        ("LICENSING_AMQP_CA", ca.display().to_string()),
        ("LICENSING_AMQP_PREFIX", prefix),
        ("LICENSING_AMQP_QUEUE_TYPE", "classic".to_owned()),
        ("LICENSING_CALLBACK_KEYS", KEY.to_owned()),
        ("LICENSING_PROCESSOR_ADDR", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let processor = Service::start("licensing-processor", &env);
    let readyz = format!("http://{}/readyz", processor.ready["ops"].as_str().unwrap());
    let http = reqwest::Client::new();
    eventually("the processor over TLS to be ready", 30, || async {
        let status = http.get(&readyz).send().await.ok()?.status();
        (status == 200).then_some(())
    })
    .await;
}

/// Starts a processor on `url` (trusting `ca` when given, with `extra` settings) whose store must
/// refuse the server; the reason it logs.
async fn processor_refused(url: &str, ca: Option<&Path>, extra: &[(&str, String)]) -> String {
    let mut env: Vec<(String, String)> = vec![
        ("LICENSING_DATABASE_URL".to_owned(), url.to_owned()),
        ("LICENSING_AMQP_URL".to_owned(), amqp_url()),
        (
            "LICENSING_AMQP_PREFIX".to_owned(),
            format!("systest-{}.", uuid::Uuid::new_v4().simple()),
        ),
        ("LICENSING_AMQP_QUEUE_TYPE".to_owned(), "classic".to_owned()),
        ("LICENSING_CALLBACK_KEYS".to_owned(), KEY.to_owned()),
        (
            "LICENSING_PROCESSOR_ADDR".to_owned(),
            "127.0.0.1:0".to_owned(),
        ),
    ];
    if let Some(ca) = ca {
        env.push(("LICENSING_DATABASE_CA".to_owned(), ca.display().to_string()));
    }
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let processor = Service::start("licensing-processor", &env);
    eventually(
        "the processor to report why it cannot start",
        30,
        || async { processor.logged("cannot start yet").first().cloned() },
    )
    .await
}
