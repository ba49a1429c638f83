//! What every console page shares: the console's state, each request's context (language,
//! session, origin), and the answers common to all pages.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use futures_util::future::LocalBoxFuture;
use licensing_bus::{Bus, BusConfig, BusError};
use licensing_runtime::Health;
use maud::{DOCTYPE, Markup, html};
use time::UtcOffset;

use super::session::{self, Attempts, Origin, Session};
use crate::api::QueryState;
use crate::config::network::Network;

use super::i18n::Lang;

/// The console's own state beside the query API's.
#[derive(Debug)]
pub(crate) struct Console {
    /// How long a session lasts.
    pub(crate) session_hours: u32,
    /// The proxies whose forwarding headers are believed.
    pub(crate) trusted: Vec<Network>,
    /// The other services' `/readyz`, by name.
    pub(crate) peers: Vec<(String, url::Url)>,
    /// Failed sign-ins per address.
    pub(crate) attempts: Attempts,
    /// The projector's task board (its own readiness).
    pub(crate) health: Health,
    /// A follower further behind makes the projector not ready.
    pub(crate) ready_max_lag: Duration,
    /// Times are shown in this zone.
    pub(crate) market_zone: UtcOffset,
    /// The broker: queue depths and the commands the console sends.
    pub(crate) bus_config: BusConfig,
    bus: tokio::sync::Mutex<Option<Bus>>,
    /// `LICENSING_CONSOLE_SECRET`: the key of its sessions; without it nobody can sign in.
    pub(crate) secret: Option<koogallery::Secret>,
}

impl Console {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        session_hours: u32,
        trusted: Vec<Network>,
        peers: Vec<(String, url::Url)>,
        health: Health,
        ready_max_lag: Duration,
        market_zone: UtcOffset,
        bus_config: BusConfig,
        secret: Option<koogallery::Secret>,
    ) -> Self {
        Self {
            secret,
            session_hours,
            trusted,
            peers,
            attempts: Attempts::default(),
            health,
            ready_max_lag,
            market_zone,
            bus_config,
            bus: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `f` with a connected bus, connecting (again) when needed; a failure drops the
    /// connection so that the next use starts afresh.
    pub(crate) async fn with_bus<T>(
        &self,
        f: impl AsyncFnOnce(&Bus) -> Result<T, BusError>,
    ) -> Result<T, BusError> {
        let mut guard = self.bus.lock().await;
        if guard.as_ref().is_none_or(|bus| !bus.is_connected()) {
            *guard = Some(Bus::connect(self.bus_config.clone()).await?);
        }
        let Some(bus) = guard.as_ref() else {
            return Err(BusError::Unavailable("not connected".to_owned()));
        };
        let result = f(bus).await;
        if result.is_err() {
            if let Some(bus) = guard.take() {
                bus.close().await;
            }
        }
        result
    }
}

/// Why a peer is not ready, as the overview shows it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerNotReady {
    /// Its URL names no host or port.
    #[error("the URL names no host and port")]
    NoAddress,
    /// It could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(#[source] std::io::Error),
    /// It did not answer in time.
    #[error("unreachable: no answer within 2 s")]
    Timeout,
    /// Its answer is not HTTP.
    #[error("not an HTTP answer")]
    NotHttp,
    /// It answered that it is not ready: the status and the start of the body.
    #[error("HTTP {status}: {body}")]
    Answered {
        /// The HTTP status.
        status: u16,
        /// At most 300 characters of the body.
        body: String,
    },
}

/// Asks a peer's `/readyz` (plain HTTP on an operations address) within 2 s: `Ok` when it
/// answers 2xx, else what it said or why it could not be asked.
pub(crate) async fn peer_ready(url: &url::Url) -> Result<(), PeerNotReady> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = url.host_str().ok_or(PeerNotReady::NoAddress)?.to_owned();
    let port = url.port_or_known_default().ok_or(PeerNotReady::NoAddress)?;
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            &url[url::Position::BeforePath..]
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(8192).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = match tokio::time::timeout(Duration::from_secs(2), ask).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(PeerNotReady::Unreachable(e)),
        Err(_) => return Err(PeerNotReady::Timeout),
    };
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(PeerNotReady::NotHttp)?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Err(PeerNotReady::Answered {
        status,
        body: body.chars().take(300).collect(),
    })
}

/// A 303 redirect to `location`.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

/// What every page knows about its request.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) lang: Lang,
    /// The language was chosen by `?lang=`: remember it.
    remember_lang: bool,
    pub(crate) session: Option<Session>,
    pub(crate) origin: Origin,
    /// The request's path and query without `lang`: the language switch's target.
    here: String,
    pub(crate) zone: UtcOffset,
}

impl Ctx {
    pub(crate) async fn new(req: &HttpRequest, state: &QueryState, console: &Console) -> Self {
        let (lang, remember_lang) = Lang::of(req);
        let mut session = session::cookie(req, session::SESSION_COOKIE)
            .zip(console.secret.as_ref())
            .and_then(|(value, secret)| {
                session::verify(value, secret, &state.tokens, state.clock.now())
            });
        if let Some(signed) = &session {
            // Signed out (here or on another projector), or not known to be not: no session.
            match session::revoked(&state.store, signed).await {
                Ok(false) => {}
                Ok(true) => session = None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the console session's sign-outs; treating it as signed out");
                    session = None;
                }
            }
        }
        let rest: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .filter(|(k, _)| k != "lang")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let mut here = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &rest {
            here.append_pair(k, v);
        }
        let query = here.finish();
        Self {
            lang,
            remember_lang,
            session,
            origin: Origin::of(req, &console.trusted),
            here: if query.is_empty() {
                req.path().to_owned()
            } else {
                format!("{}?{query}", req.path())
            },
            zone: console.market_zone,
        }
    }

    /// The signed-in session, or a redirect to the sign-in page that comes back here.
    #[allow(clippy::result_large_err)] // the error is the answer, built once per request
    fn signed_in(&self) -> Result<&Session, HttpResponse> {
        self.session.as_ref().ok_or_else(|| {
            let next: String = url::form_urlencoded::byte_serialize(self.here.as_bytes()).collect();
            see_other(&format!("/console/sign-in?next={next}"))
        })
    }

    /// The session of a form post whose CSRF token is its session's: else a redirect to sign in
    /// (no session) or 403 (no or another token).
    #[allow(clippy::result_large_err)] // the error is the answer, built once per request
    fn posted(&self, form: &HashMap<String, String>) -> Result<&Session, HttpResponse> {
        let session = self.signed_in()?;
        if session::csrf_matches(session, form.get("csrf").map(String::as_str)) {
            Ok(session)
        } else {
            let l = self.lang;
            Err(self.page(
                StatusCode::FORBIDDEN,
                l.tr("Refused", "已拒绝"),
                html! {
                    h1 { (l.tr("This form is not valid", "表单无效")) }
                    p { (l.tr("The form did not carry this session's check token (CSRF). Reload the page and try again.",
                               "表单缺少本会话的校验令牌 (CSRF)。请刷新页面后重试。")) }
                },
            ))
        }
    }

    /// The CSRF field of this session's forms.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! {
            @if let Some(session) = &self.session {
                input type="hidden" name="csrf" value=(session.csrf);
            }
        }
    }

    /// A full page with the header, navigation, language switch and sign-out.
    pub(crate) fn page(&self, status: StatusCode, title: &str, main: Markup) -> HttpResponse {
        let l = self.lang;
        let other = l.other();
        let switch = if self.here.contains('?') {
            format!("{}&lang={}", self.here, other.code())
        } else {
            format!("{}?lang={}", self.here, other.code())
        };
        let markup = html! {
            (DOCTYPE)
            html lang=(l.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (l.tr("Licensing console", "授权码控制台")) }
                    link rel="stylesheet" href="/console/style.css";
                }
                body {
                    header {
                        a.brand href="/console/" { (l.tr("Licensing console", "授权码控制台")) }
                        @if self.session.is_some() {
                            nav aria-label=(l.tr("Sections", "栏目")) {
                                a href="/console/" { (l.tr("Overview", "概览")) }
                                a href="/console/licenses" { (l.tr("Licenses (授权码)", "授权码")) }
                                a href="/console/dead-letters" { (l.tr("Dead letters", "死信")) }
                                a href="/console/probe" { (l.tr("Probe (拨测)", "拨测")) }
                            }
                        }
                        a.lang href=(switch) lang=(other.code()) hreflang=(other.code()) { (other.name()) }
                        @if let Some(session) = &self.session {
                            form.sign-out method="post" action="/console/sign-out" {
                                (self.csrf_field())
                                span.actor { (session.actor) }
                                button type="submit" { (l.tr("Sign out", "退出")) }
                                button type="submit" name="everywhere" value="1" {
                                    (l.tr("Sign out everywhere", "全部退出"))
                                }
                            }
                        }
                    }
                    main { (main) }
                    footer {
                        (l.tr("Times in the market time zone", "时间为市场时区"))
                        " (UTC" (crate::read_model::time::zone_label(self.zone)) ")"
                    }
                }
            }
        };
        let mut response = HttpResponse::build(status);
        response
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "same-origin"))
            .insert_header((header::X_FRAME_OPTIONS, "DENY"))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ));
        if self.remember_lang {
            response.append_header((
                header::SET_COOKIE,
                session::set_cookie(session::LANG_COOKIE, l.code(), 31_536_000, self.origin.tls),
            ));
        }
        response.body(markup.into_string())
    }

    /// A page saying why something could not be shown or done.
    pub(crate) fn refusal(&self, refusal: &crate::api::Refusal) -> HttpResponse {
        let l = self.lang;
        self.page(
            refusal.status,
            l.tr("Not available", "无法显示"),
            html! {
                h1 { (refusal.status.as_u16()) " " (refusal.status.canonical_reason().unwrap_or("")) }
                p.error { code { (refusal.code) } ": " (refusal.message) }
            },
        )
    }
}

/// The query API's and the console's state of a request.
fn shared(
    req: &HttpRequest,
) -> Result<(web::Data<QueryState>, web::Data<Console>), actix_web::Error> {
    req.app_data::<web::Data<QueryState>>()
        .cloned()
        .zip(req.app_data::<web::Data<Console>>().cloned())
        .ok_or_else(|| {
            actix_web::error::ErrorInternalServerError("the console is not set up on this listener")
        })
}

/// An answer given instead of the handler's (a redirect to sign in, a refused form).
fn answered(response: HttpResponse) -> actix_web::Error {
    actix_web::error::InternalError::from_response("answered before the handler", response).into()
}

impl FromRequest for Ctx {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let (state, console) = shared(&req)?;
            Ok(Ctx::new(&req, &state, &console).await)
        })
    }
}

/// A page request of a signed-in operator: its context, whose session is there. Without a
/// session the handler does not run: the answer is a redirect to the sign-in page that comes back
/// here.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) ctx: Ctx,
}

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let ctx = Ctx::from_request(req, payload);
        Box::pin(async move {
            let ctx = ctx.await?;
            ctx.signed_in().map_err(answered)?;
            Ok(Self { ctx })
        })
    }
}

/// A form post of a signed-in operator carrying its session's CSRF token: its context, session
/// and fields. Else the handler does not run: the answer is a redirect to sign in (no session) or
/// 403 (no or another token).
#[derive(Debug)]
pub(crate) struct Posted {
    pub(crate) ctx: Ctx,
    pub(crate) session: Session,
    pub(crate) fields: HashMap<String, String>,
}

impl Posted {
    /// A field's value, empty when absent.
    pub(crate) fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

impl FromRequest for Posted {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let ctx = Ctx::from_request(req, payload);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let (ctx, body) = (ctx.await?, body.await?);
            let fields = form(&body);
            let session = ctx.posted(&fields).map_err(answered)?.clone();
            Ok(Self {
                ctx,
                session,
                fields,
            })
        })
    }
}

/// A form body's fields.
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
