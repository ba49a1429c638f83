//! `koogallery`: the seller's command-line tool for the KooGallery License 2.0 protocol.
//!
//! It signs and verifies callbacks exactly as the marketplace and the backend do, and signs
//! open-API requests with AK/SK, so a signature mismatch can be reproduced outside any service.
//! Bodies are read from standard input byte for byte: a trailing newline is part of the body.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

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
    let mut body = Vec::new();
    let mut out = std::io::stdout().lock();
    let result = std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Failure::usage(format!("cannot read the body from standard input: {e}")))
        .and_then(|_| run(cli.command, &body, &mut out));
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

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn emit(out: &mut impl Write, line: &str) -> Result<(), Failure> {
    writeln!(out, "{line}").map_err(|e| Failure::usage(format!("cannot write the output: {e}")))
}

fn run(command: Command, body: &[u8], out: &mut impl Write) -> Result<(), Failure> {
    match command {
        Command::SignCallback {
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
        Command::VerifyCallback {
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
        Command::SignRequest {
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
