//! What every licensing service shares:
//!
//! - [`Settings`]: `LICENSING_*` settings from an optional file (`LICENSING_CONFIG`) overridden by
//!   the environment; a bad value fails start-up with the variable's name;
//! - [`init_logging`]: structured `tracing` logs, JSON or text;
//! - [`shutdown_signal`]: one [`CancellationToken`] cancelled on SIGTERM or ctrl-c;
//! - [`ops_server`]: `/healthz`, `/readyz` and Prometheus `/metrics` on the operations address;
//! - [`trace`]: spans with W3C trace context, exported over OTLP/HTTP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`init_traces`]);
//! - [`supervise`]: long-running tasks restarted with [`Backoff`] when they fail, their state on a
//!   [`Health`] board that `/readyz` reads.

mod clock;
mod ops;
mod settings;
mod supervise;
pub mod trace;

pub use clock::Clock;
/// A secret setting (token, key): its `Debug` is redacted.
pub use koogallery::Secret;
pub use ops::{Readiness, get_only, ops_server, ops_service, post_only};
pub use settings::{Settings, SettingsError, check_secret};
pub use supervise::{Backoff, Health, Task, panic_message, supervise, until_done};
pub use tokio_util::sync::CancellationToken;

/// Where an API token may be used (`LICENSING_API_TOKENS` items `name:token:internal,query`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// The ingress's internal API (`LICENSING_INTERNAL_ADDR`).
    Internal,
    /// The projector's query API (`LICENSING_QUERY_ADDR`, `/v1/…`).
    Query,
    /// The operator console's sign-in (`/console/`).
    Console,
}

impl Scope {
    /// Every scope, in the order of their names.
    pub const ALL: [Self; 3] = [Self::Internal, Self::Query, Self::Console];

    /// The name in `LICENSING_API_TOKENS`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Query => "query",
            Self::Console => "console",
        }
    }

    fn parse_list(list: &str) -> Option<Vec<Self>> {
        let mut scopes = Vec::new();
        for word in list.split(',') {
            let scope = Self::ALL.into_iter().find(|s| s.as_str() == word.trim())?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort_unstable();
        Some(scopes)
    }
}

/// An API token and the name its actions are recorded under (`LICENSING_API_TOKENS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The name: the actor of what the token asks.
    pub name: String,
    /// The token.
    pub token: Secret,
    /// Where it may be used; empty: everywhere.
    pub scopes: Vec<Scope>,
}

impl ApiToken {
    /// One item of `LICENSING_API_TOKENS`: `name:token`, `name:token:scope,scope…` (scopes among
    /// `internal`, `query`, `console`; none means all), or a bare token named `default`. A name
    /// is 1 to 64 of `A-Z a-z 0-9 _ . -`; an item whose part before the first `:` is not a name
    /// is a bare token; a last `:part` that is not a list of scopes belongs to the token.
    pub fn parse(item: &str) -> Self {
        match item.split_once(':') {
            Some((name, rest))
                if !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) =>
            {
                let (token, scopes) = rest
                    .rsplit_once(':')
                    .and_then(|(token, list)| Some((token, Scope::parse_list(list)?)))
                    .unwrap_or((rest, Vec::new()));
                Self {
                    name: name.to_owned(),
                    token: Secret::new(token.to_owned()),
                    scopes,
                }
            }
            _ => Self {
                name: "default".to_owned(),
                token: Secret::new(item.to_owned()),
                scopes: Vec::new(),
            },
        }
    }

    /// Whether this token may be used for `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.is_empty() || self.scopes.contains(&scope)
    }

    /// Its scopes as written, `all` when unrestricted.
    pub fn scope_names(&self) -> String {
        if self.scopes.is_empty() {
            return "all".to_owned();
        }
        self.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Why a request's bearer token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefused {
    /// None, or none of the configured tokens: 401.
    Unknown,
    /// A configured token without the listener's scope: 403, naming it and its scopes.
    OutOfScope {
        /// The token's name.
        name: String,
        /// Its scopes.
        scopes: String,
    },
}

impl TokenRefused {
    /// The HTTP status, error code and message of the refusal on a listener of `scope`.
    pub fn answer(&self, scope: Scope) -> (actix_web::http::StatusCode, &'static str, String) {
        match self {
            Self::Unknown => (
                actix_web::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".to_owned(),
            ),
            Self::OutOfScope { name, scopes } => (
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token {name} may not use the {} API (its scopes: {scopes})",
                    scope.as_str()
                ),
            ),
        }
    }
}

/// The one JSON error body of the HTTP APIs (ingress's internal API, the query API, the ops
/// routes): `{"code", "message"}`; a caller may add fields beside them.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "code": code, "message": message })
}

/// An error answer: `status` with [`error_body`], and `detail`'s value under its name beside the
/// code and the message.
pub fn error_response(
    status: actix_web::http::StatusCode,
    code: &str,
    message: &str,
    detail: Option<(&str, &serde_json::Value)>,
) -> actix_web::HttpResponse {
    let mut body = error_body(code, message);
    if let Some((name, value)) = detail {
        body[name] = value.clone();
    }
    actix_web::HttpResponse::build(status).json(body)
}

/// The token the request carries as `Authorization: Bearer <token>`, if it is one of `tokens`
/// and may be used for `scope`.
pub fn authorized<'a>(
    req: &actix_web::HttpRequest,
    tokens: &'a [ApiToken],
    scope: Scope,
) -> Result<&'a ApiToken, TokenRefused> {
    let token = bearer_token(req, tokens).ok_or(TokenRefused::Unknown)?;
    if token.allows(scope) {
        Ok(token)
    } else {
        Err(TokenRefused::OutOfScope {
            name: token.name.clone(),
            scopes: token.scope_names(),
        })
    }
}

/// The token the request carries as `Authorization: Bearer <token>` (the scheme in any case), if
/// it is one of `tokens`; every token compared in constant time (the internal and query APIs).
pub fn bearer_token<'a>(
    req: &actix_web::HttpRequest,
    tokens: &'a [ApiToken],
) -> Option<&'a ApiToken> {
    let presented = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    find_token(tokens, presented)
}

/// The API token equal to `presented`, compared in constant time against every token.
pub fn find_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    tokens.iter().fold(None, |found, candidate| {
        if same_bytes(candidate.token.expose().as_bytes(), presented.as_bytes()) {
            found.or(Some(candidate))
        } else {
            found
        }
    })
}

/// Whether two byte strings are equal, in time that depends on their lengths only.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Starts logging: `LICENSING_LOG_FORMAT=json` (the default in deployment) or `text`; the level
/// from `RUST_LOG` (default `info`).
pub fn init_logging(settings: &Settings) -> Result<(), SettingsError> {
    use tracing_subscriber::EnvFilter;
    let json = match settings.optional("LICENSING_LOG_FORMAT")?.as_deref() {
        None | Some("json") => true,
        Some("text") => false,
        Some(other) => {
            return Err(SettingsError::invalid(
                "LICENSING_LOG_FORMAT",
                format!("expected json or text, got {other:?}"),
            ));
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// Starts exporting traces when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as `service` unless `OTEL_SERVICE_NAME` says
/// otherwise (ADR 0017). Call inside the runtime, after [`init_logging`].
pub fn init_traces(settings: &Settings, service: &str) -> Result<(), SettingsError> {
    if let Some(export) = trace::TraceExport::from_lookup(service, settings.lookup())
        .map_err(|(name, reason)| SettingsError::invalid(name, reason))?
    {
        trace::start_traces(export);
    }
    Ok(())
}

/// A token cancelled when the process receives SIGTERM or ctrl-c.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        cancel.cancel();
    });
    token
}

/// A license's access as an entitlement states it (D24); times in seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `pending`, `active`, `expired`, `frozen` or `released`.
    pub mode: String,
    /// While active: when access ends, if known.
    pub until: Option<i64>,
    /// While frozen: until when data is kept.
    pub data_kept_until: Option<i64>,
}

/// A signed entitlement as the APIs answer it (D24): the compact JWS and its verdict in clear,
/// times in RFC 3339. `exp` is `now + ttl_seconds`, never past `access_until`.
pub fn entitlement_json(
    keys: &licensing_entitlement::Keyring,
    license: &str,
    access: &Verdict,
    now: time::OffsetDateTime,
    ttl_seconds: i64,
) -> serde_json::Value {
    let seconds = |t: Option<i64>| {
        t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    let iat = now.unix_timestamp();
    let mut claims = licensing_entitlement::Claims::new(
        license,
        &access.mode,
        access.until,
        iat,
        iat + ttl_seconds,
    );
    claims.data_kept_until = access.data_kept_until;
    let token = keys.current().sign(&claims);
    serde_json::json!({
        "token": token,
        "access_mode": access.mode,
        "access_until": seconds(access.until),
        "data_kept_until": seconds(access.data_kept_until),
        "expires_at": seconds(Some(claims.exp)),
    })
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn tokens_parse_with_and_without_scopes() {
        let all = ApiToken::parse("ops:s3cret-token");
        assert_eq!(
            (all.name.as_str(), all.token.expose(), all.scopes.len()),
            ("ops", "s3cret-token", 0)
        );
        assert!(Scope::ALL.iter().all(|s| all.allows(*s)));
        let query = ApiToken::parse("reports:s3cret-token:query");
        assert_eq!(query.token.expose(), "s3cret-token");
        assert!(query.allows(Scope::Query));
        assert!(!query.allows(Scope::Internal) && !query.allows(Scope::Console));
        assert_eq!(query.scope_names(), "query");
        let two = ApiToken::parse("ci:tok:console,internal");
        assert_eq!(two.scopes, vec![Scope::Internal, Scope::Console]);
        // A last part that is not a list of scopes belongs to the token.
        let colon = ApiToken::parse("ops:abc:def");
        assert_eq!((colon.token.expose(), colon.scopes.len()), ("abc:def", 0));
        let bare = ApiToken::parse("just-a-token");
        assert_eq!(
            (bare.name.as_str(), bare.token.expose()),
            ("default", "just-a-token")
        );
    }
}
