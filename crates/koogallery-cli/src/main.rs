//! `koogallery`: the seller's command-line tool for the KooGallery License 2.0 protocol.
//!
//! It signs and verifies callbacks exactly as the marketplace and the backend do, and signs
//! open-API requests with AK/SK, so a signature mismatch can be reproduced outside any service.
//! Bodies are read from standard input byte for byte: a trailing newline is part of the body.
//! It also plays the marketplace: `sim` serves a local open API, `send` fires a signed callback,
//! `probe` replays saved debug cases as the twice-daily probe does.

mod entitlement;
mod scenario;
mod send;
mod sim;

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use koogallery::apig::{self, Credentials};
use koogallery::market_time::{format_sdk_date, parse_sdk_date};
use koogallery::signature::{
    AccessKey, DEFAULT_WINDOW_MS, SignatureParams, Verifier, signed_query,
};
use url::Url;

#[derive(Debug, Parser)]
#[command(
    name = "koogallery",
    version,
    about = "Sign and verify KooGallery License 2.0 callbacks and open-API requests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Signing(Signing),
    #[command(flatten)]
    Marketplace(Marketplace),
    /// Signed entitlements of the licensing backend (D24).
    #[command(subcommand)]
    Entitlement(Entitlement),
}

/// The commands about signed entitlements.
#[derive(Debug, Subcommand)]
enum Entitlement {
    /// Verify an entitlement token (standard input) offline; prints its claims (exit 0) or why it
    /// is refused (exit 1).
    Verify {
        /// The JWK set: a file, or the URL of `/.well-known/jwks.json`.
        #[arg(long)]
        jwks: String,
        /// Check at this instant (seconds since the epoch) instead of now.
        #[arg(long)]
        at: Option<i64>,
    },
}

/// The commands that sign and verify (bodies on standard input).
#[derive(Debug, Subcommand)]
enum Signing {
    /// Sign a callback body (stdin) as KooGallery does; prints `signature=…&timestamp=…&nonce=…`.
    SignCallback {
        /// The access key from 密钥管理.
        #[arg(long)]
        key: String,
        /// Nonce to use (default: random).
        #[arg(long)]
        nonce: Option<String>,
        /// Timestamp in milliseconds to use (default: now).
        #[arg(long)]
        timestamp: Option<String>,
    },
    /// Verify a callback body (stdin) against its query string; prints `valid` or the reason.
    VerifyCallback {
        /// An access key; repeat for rotation (current first).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The query string of the callback URL: `signature=…&timestamp=…&nonce=…`.
        #[arg(long)]
        query: String,
        /// The current time in milliseconds (default: now).
        #[arg(long)]
        now: Option<i64>,
        /// Allowed distance between the timestamp and now, in milliseconds.
        #[arg(long, default_value_t = DEFAULT_WINDOW_MS)]
        window_ms: i64,
    },
    /// Sign an open-API request (body on stdin) with AK/SK; prints the `X-Sdk-Date` and
    /// `Authorization` headers.
    SignRequest {
        /// Access Key Id.
        #[arg(long)]
        ak: String,
        /// Secret Access Key.
        #[arg(long)]
        sk: String,
        /// HTTP method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Full request URL.
        #[arg(long)]
        url: String,
        /// Signing time, `YYYYMMDDTHHMMSSZ` (default: now).
        #[arg(long)]
        date: Option<String>,
        /// An extra header to sign, `Name: value`; repeatable. A `Content-Type` here replaces the
        /// default `application/json`.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Sign only `X-Sdk-Date` and the `--header`s given, not `Content-Type` and `Host`.
        #[arg(long)]
        no_default_headers: bool,
        /// Also print the canonical request and the string to sign, on standard error.
        #[arg(long)]
        show_canonical: bool,
    },
}

/// The commands that play the marketplace.
#[derive(Debug, Subcommand)]
enum Marketplace {
    /// Serve a local KooGallery open API (activate, heartbeat) that checks AK/SK signatures.
    Sim {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: String,
        /// Access Key Id the simulated gateway accepts.
        #[arg(long)]
        ak: String,
        /// Its Secret Access Key.
        #[arg(long)]
        sk: String,
        /// A JSON file with the license codes to start with: `[{"license": "PL…", "state": "claimed"}, …]`.
        #[arg(long)]
        licenses: Option<std::path::PathBuf>,
        /// Accepted distance between `X-Sdk-Date` and now, in seconds.
        #[arg(long, default_value_t = 900)]
        max_skew_seconds: u64,
    },
    /// Fire one signed callback at a seller's URL and print the answer (exit 0 on `000000`).
    Send {
        /// `renew`, `freeze`, `unfreeze` or `release`.
        kind: String,
        /// The seller's callback URL.
        #[arg(long)]
        url: String,
        /// The access key.
        #[arg(long)]
        key: String,
        /// The license code.
        #[arg(long)]
        license: String,
        /// New expiry for `renew`, `yyyyMMddHHmmss`.
        #[arg(long)]
        expire: Option<String>,
        /// Order id (renew, release).
        #[arg(long)]
        order: Option<String>,
        /// Scene for `renew`: `RENEWAL` or `UNSUBSCRIBE_RENEWAL_PERIOD`.
        #[arg(long, default_value = "RENEWAL")]
        scene: String,
        /// Send as a debug call (`testFlag=1`).
        #[arg(long)]
        test: bool,
    },
    /// Play a license's lifecycle (a JSON scenario) against a running backend and the simulator.
    Scenario {
        /// The scenario file.
        file: std::path::PathBuf,
    },
    /// Replay saved debug cases against a seller's URL as the twice-daily probe does.
    Probe {
        /// The seller's callback URL.
        #[arg(long)]
        url: String,
        /// The access key.
        #[arg(long)]
        key: String,
        /// A JSON array of cases: callback bodies, or `{"name": …, "body": …}`.
        #[arg(long)]
        cases: std::path::PathBuf,
    },
}

/// A failure to report on standard error (when it has a message), with the exit code to use.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let signing = match cli.command {
        Command::Marketplace(command) => return marketplace(command),
        Command::Entitlement(Entitlement::Verify { jwks, at }) => {
            return block_on(entitlement::run(&jwks, at));
        }
        Command::Signing(command) => command,
    };
    let mut body = Vec::new();
    let mut out = std::io::stdout().lock();
    let result = std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Failure::usage(format!("cannot read the body from standard input: {e}")))
        .and_then(|_| run(signing, &body, &mut out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = out.flush();
            if !failure.message.is_empty() {
                eprintln!("koogallery: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// The commands that play the marketplace (they need a runtime, not standard input).
/// Runs `work` on a runtime: exit 0 when it passed, 1 when it failed, 2 (with the message) when
/// it could not run.
fn block_on(work: impl std::future::Future<Output = Result<bool, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("koogallery: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(work) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("koogallery: {message}");
            ExitCode::from(2)
        }
    }
}

fn marketplace(command: Marketplace) -> ExitCode {
    let parse_url = |url: &str| Url::parse(url).map_err(|e| format!("--url {url:?}: {e}"));
    block_on(async {
        match command {
            Marketplace::Sim {
                listen,
                ak,
                sk,
                licenses,
                max_skew_seconds,
            } => {
                let licenses = match licenses {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| format!("--licenses {}: {e}", path.display()))?;
                        serde_json::from_str(&text)
                            .map_err(|e| format!("--licenses {}: {e}", path.display()))?
                    }
                    None => Vec::new(),
                };
                let credentials = Credentials::new(ak, sk);
                sim::run(
                    &listen,
                    credentials,
                    licenses,
                    std::time::Duration::from_secs(max_skew_seconds),
                )
                .await
                .map_err(|e| format!("--listen {listen}: {e}"))?;
                Ok(true)
            }
            Marketplace::Send {
                kind,
                url,
                key,
                license,
                expire,
                order,
                scene,
                test,
            } => {
                let body = send::callback_body(
                    &kind,
                    &license,
                    expire.as_deref(),
                    order.as_deref(),
                    &scene,
                    test,
                )?;
                match send::send(&parse_url(&url)?, &AccessKey::new(key), &body).await {
                    Ok(answer) => {
                        println!("{answer}");
                        Ok(true)
                    }
                    Err(report) => {
                        println!("{report}");
                        Ok(false)
                    }
                }
            }
            Marketplace::Scenario { file } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                let (lines, all_passed) = scenario::run(&text).await?;
                for line in lines {
                    println!("{line}");
                }
                Ok(all_passed)
            }
            Marketplace::Probe { url, key, cases } => {
                let text = std::fs::read_to_string(&cases)
                    .map_err(|e| format!("--cases {}: {e}", cases.display()))?;
                let (lines, all_passed) =
                    send::probe(&parse_url(&url)?, &AccessKey::new(key), &text).await?;
                for line in lines {
                    println!("{line}");
                }
                Ok(all_passed)
            }
        }
    })
}

fn now_millis() -> i64 {
    koogallery::market_time::unix_millis(time::OffsetDateTime::now_utc())
}

fn emit(out: &mut impl Write, line: &str) -> Result<(), Failure> {
    writeln!(out, "{line}").map_err(|e| Failure::usage(format!("cannot write the output: {e}")))
}

fn run(command: Signing, body: &[u8], out: &mut impl Write) -> Result<(), Failure> {
    match command {
        Signing::SignCallback {
            key,
            nonce,
            timestamp,
        } => {
            let nonce = nonce.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            let timestamp = timestamp.unwrap_or_else(|| now_millis().to_string());
            if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::usage(
                    "--timestamp must be a decimal number of milliseconds",
                ));
            }
            emit(
                out,
                &signed_query(&AccessKey::new(key), &nonce, &timestamp, body),
            )
        }
        Signing::VerifyCallback {
            keys,
            query,
            now,
            window_ms,
        } => {
            let verifier =
                Verifier::with_window(keys.into_iter().map(AccessKey::new).collect(), window_ms);
            let outcome = SignatureParams::from_query(query.trim_start_matches('?'))
                .and_then(|params| verifier.verify(&params, body, now.unwrap_or_else(now_millis)));
            match outcome {
                Ok(verified) if verified.key_index == 0 => emit(out, "valid"),
                Ok(verified) => emit(out, &format!("valid (with key {})", verified.key_index + 1)),
                Err(reason) => {
                    emit(out, &reason.to_string())?;
                    Err(Failure {
                        message: String::new(),
                        code: 1,
                    })
                }
            }
        }
        Signing::SignRequest {
            ak,
            sk,
            method,
            url,
            date,
            headers,
            no_default_headers,
            show_canonical,
        } => {
            let url =
                Url::parse(&url).map_err(|e| Failure::usage(format!("--url {url:?}: {e}")))?;
            let date = match date {
                Some(date) => {
                    parse_sdk_date(&date).map_err(|e| {
                        Failure::usage(format!("--date {date:?}: {e}, e.g. 20240101T000000Z"))
                    })?;
                    date
                }
                None => format_sdk_date(time::OffsetDateTime::now_utc()),
            };
            let extra = headers
                .iter()
                .map(|h| {
                    h.split_once(':')
                        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                        .filter(|(n, _)| !n.is_empty())
                        .ok_or_else(|| {
                            Failure::usage(format!("--header {h:?} is not `Name: value`"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let signed_headers = if no_default_headers {
                let mut all = vec![(apig::DATE_HEADER.to_owned(), date.clone())];
                all.extend(extra);
                all
            } else {
                let content_type = extra
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map_or("application/json".to_owned(), |(_, v)| v.clone());
                let others: Vec<_> = extra
                    .into_iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"))
                    .collect();
                apig::default_headers(&url, &content_type, &date, &others)
            };
            let signature = apig::sign(
                &Credentials::new(ak, sk),
                &method,
                &url,
                &signed_headers,
                body,
            )
            .map_err(|e| Failure::usage(e.to_string()))?;
            if show_canonical {
                eprintln!(
                    "--- canonical request ---\n{}\n--- string to sign ---\n{}",
                    signature.canonical_request, signature.string_to_sign
                );
            }
            emit(out, &format!("{}: {date}", apig::DATE_HEADER))?;
            emit(out, &format!("Authorization: {}", signature.authorization))
        }
    }
}
