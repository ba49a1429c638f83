//! Signing in to the console with an API token, and signing out (of this browser, or everywhere).

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;

use super::session::{self};
use crate::api::QueryState;

use super::context::{Console, Ctx, Posted, form, see_other};

/// Where to go after signing in: a console path, never another site.
fn next_of(raw: Option<&String>) -> String {
    raw.filter(|n| n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\'))
        .cloned()
        .unwrap_or_else(|| "/console/".to_owned())
}

fn sign_in_page(ctx: &Ctx, status: StatusCode, next: &str, problem: Option<&str>) -> HttpResponse {
    let l = ctx.lang;
    let nonce = session::sign_in_nonce();
    let mut response = ctx.page(
        status,
        l.tr("Sign in", "登录"),
        html! {
            h1 { (l.tr("Sign in", "登录")) }
            @if let Some(problem) = problem {
                p.error role="alert" { (problem) }
            }
            form.sign-in method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(nonce);
                input type="hidden" name="next" value=(next);
                label for="token" { (l.tr("API token (LICENSING_API_TOKENS)", "API 令牌 (LICENSING_API_TOKENS)")) }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { (l.tr("Sign in", "登录")) }
            }
        },
    );
    let cookie = session::set_cookie(session::SIGN_IN_COOKIE, &nonce, 3600, ctx.origin.tls);
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn sign_in_form(
    ctx: Ctx,
    req: HttpRequest,
    console: web::Data<Console>,
) -> HttpResponse {
    let query = form(req.query_string().as_bytes());
    let next = next_of(query.get("next"));
    if ctx.session.is_some() {
        return see_other(&next);
    }
    if console.secret.is_none() {
        return console_off(&ctx, &next);
    }
    sign_in_page(&ctx, StatusCode::OK, &next, None)
}

/// The sign-in page of a console without `LICENSING_CONSOLE_SECRET`: 503, saying what to set.
fn console_off(ctx: &Ctx, next: &str) -> HttpResponse {
    sign_in_page(
        ctx,
        StatusCode::SERVICE_UNAVAILABLE,
        next,
        Some(ctx.lang.tr(
            "The console is off: LICENSING_CONSOLE_SECRET is not set on this projector.",
            "控制台未启用：此 projector 未设置 LICENSING_CONSOLE_SECRET。",
        )),
    )
}

pub(crate) async fn sign_in(
    ctx: Ctx,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<QueryState>,
    console: web::Data<Console>,
) -> HttpResponse {
    let l = ctx.lang;
    let fields = form(&body);
    let next = next_of(fields.get("next"));
    let client = ctx.origin.client;
    if let Some(wait) = console.attempts.blocked(client) {
        tracing::warn!(client = ?client, "console sign-in refused: too many wrong tokens");
        let mut response = sign_in_page(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            Some(l.tr(
                "Too many wrong tokens from this address. Wait a few minutes and try again.",
                "此地址输错令牌次数过多。请等待几分钟后重试。",
            )),
        );
        if let Ok(value) = header::HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let double_submit = session::cookie(&req, session::SIGN_IN_COOKIE);
    let csrf_ok = match (double_submit, fields.get("csrf")) {
        (Some(cookie), Some(field)) => {
            licensing_runtime::same_bytes(cookie.as_bytes(), field.as_bytes())
        }
        _ => false,
    };
    if !csrf_ok {
        return sign_in_page(
            &ctx,
            StatusCode::FORBIDDEN,
            &next,
            Some(l.tr(
                "The sign-in form expired. Please try again.",
                "登录表单已过期，请重试。",
            )),
        );
    }
    let presented = fields.get("token").map_or("", |t| t.trim());
    let Some(token) = licensing_runtime::find_token(&state.tokens, presented)
        .filter(|t| t.allows(licensing_runtime::Scope::Console))
    else {
        console.attempts.failed(client);
        tracing::warn!(client = ?client, "console sign-in refused: wrong token");
        return sign_in_page(
            &ctx,
            StatusCode::UNAUTHORIZED,
            &next,
            Some(l.tr("That token is not accepted.", "该令牌无效。")),
        );
    };
    let Some(secret) = console.secret.as_ref() else {
        return console_off(&ctx, &next);
    };
    let hours = i64::from(console.session_hours);
    let expires_at = state.clock.now() + time::Duration::hours(hours);
    let value = session::issue(secret, token, state.clock.now(), expires_at);
    tracing::info!(actor = %token.name, client = ?client, "console sign-in");
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(
                session::SESSION_COOKIE,
                &value,
                hours * 3600,
                ctx.origin.tls,
            ),
        ))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(session::SIGN_IN_COOKIE, "", 0, ctx.origin.tls),
        ))
        .finish()
}

pub(crate) async fn sign_out(posted: Posted, state: web::Data<QueryState>) -> HttpResponse {
    let Posted {
        ctx,
        session,
        fields,
    } = &posted;
    let everywhere = fields.get("everywhere").is_some_and(|v| v == "1");
    if let Err(e) = session::sign_out(&state.store, session, everywhere, state.clock.now()).await {
        tracing::error!(actor = %session.actor, error = %e, "console sign-out not recorded");
        let l = ctx.lang;
        return ctx.page(
            StatusCode::SERVICE_UNAVAILABLE,
            l.tr("Not signed out", "未能退出"),
            html! {
                h1 { (l.tr("The sign-out could not be recorded", "未能记录退出")) }
                p { (l.tr("The event store is unavailable: this session still works elsewhere. Try again in a moment.",
                           "事件存储不可用：此会话在其他地方仍然有效。请稍后重试。")) }
            },
        );
    }
    tracing::info!(actor = %session.actor, everywhere, "console sign-out");
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/sign-in"))
        .append_header((
            header::SET_COOKIE,
            session::set_cookie(session::SESSION_COOKIE, "", 0, ctx.origin.tls),
        ))
        .finish()
}
