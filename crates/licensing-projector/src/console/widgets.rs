//! What several console pages show and do: links, texts, notices, the search form, commands
//! sent as the session's operator.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use base64::Engine as _;
use licensing_messages::{CommandBody, CommandEnvelope};
use maud::{Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use time::OffsetDateTime;

use super::context::Console;
use super::i18n::Lang;
use crate::api::Refusal;

/// Entries of a timeline or ledger shown at most; the evidence pack has them all.
pub(crate) const SHOWN: usize = 200;

/// What a path segment may not hold as is (RFC 3986 unreserved characters stay).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub(crate) fn seg(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

pub(crate) fn license_href(code: &str, sandbox: bool) -> String {
    format!(
        "/console/licenses/{}{}",
        seg(code),
        if sandbox { "?sandbox=true" } else { "" }
    )
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn day_text(v: &Value) -> String {
    v.as_i64()
        .and_then(crate::read_model::time::date_of)
        .unwrap_or_else(|| "—".to_owned())
}

/// The query parameters of a request, without empty values (a GET form sends every field) and
/// without `lang`.
pub(crate) fn params(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, v)| !v.is_empty() && k != "lang")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub(crate) fn notice(l: Lang, done: Option<&String>) -> Markup {
    let message = match done.map(String::as_str) {
        Some("activation") => l.tr(
            "Activation requested: the processor applies it and the outbound worker calls the marketplace; the timeline shows each step.",
            "已请求激活：处理器处理后由出站任务调用云商店；时间线显示每一步。",
        ),
        Some("drift") => l.tr(
            "Drift resolution sent: the timeline shows it once applied.",
            "已提交差异处理：处理后会出现在时间线中。",
        ),
        Some("redriven") => l.tr(
            "Re-driven: the command is back on the command queue and is applied once.",
            "已重投：命令已回到命令队列，只会被处理一次。",
        ),
        Some("already") => l.tr("It was re-driven already.", "它已被重投过。"),
        Some("none") => l.tr("Nothing was waiting.", "没有等待中的死信。"),
        _ => return html! {},
    };
    html! { p.notice role="status" { (message) } }
}

/// A command from the console, with the session's token name as actor.
pub(crate) fn command(actor: &str, command: CommandBody) -> CommandEnvelope {
    let mut envelope = CommandEnvelope::new(
        "console",
        koogallery::market_time::unix_millis(OffsetDateTime::now_utc()),
        command,
    );
    envelope.actor = Some(actor.to_owned());
    envelope
}

pub(crate) async fn send(console: &Console, envelope: &CommandEnvelope) -> Result<(), Refusal> {
    console
        .with_bus(async |bus| crate::commands::send_command(bus, envelope).await)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the console cannot send a command");
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the broker cannot take the command right now; retry",
            )
        })
}

pub(crate) fn search_form(l: Lang, q: &str) -> Markup {
    html! {
        form.filters method="get" action="/console/licenses" role="search" {
            label {
                (l.tr("Code prefix, order id or product", "授权码前缀、订单号或产品"))
                input type="search" name="q" value=(q);
            }
            button type="submit" { (l.tr("Search", "搜索")) }
        }
    }
}

pub(crate) fn unavailable(l: Lang) -> Markup {
    html! { span.bad { (l.tr("unavailable", "不可用")) } }
}

pub(crate) fn pretty(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
}

/// A payload: pretty JSON when it is JSON, and its exact bytes (as text when UTF-8, else base64).
pub(crate) fn payload(l: Lang, label: &str, bytes: &[u8], meta: &Value) -> Markup {
    html! {
        h4 { (label) }
        @if let Some(pretty) = pretty(bytes) {
            p.muted { (l.tr("As JSON:", "JSON 格式：")) }
            pre.pretty { (pretty) }
        }
        @match std::str::from_utf8(bytes) {
            Ok(text) => {
                p.muted { (l.tr("Exact bytes (UTF-8):", "原始字节 (UTF-8)：")) " " (bytes.len()) " B" }
                pre.exact { (text) }
            },
            Err(_) => {
                p.muted { (l.tr("Exact bytes (base64):", "原始字节 (base64)：")) " " (bytes.len()) " B" }
                pre.exact { (base64::engine::general_purpose::STANDARD.encode(bytes)) }
            },
        }
        @if !meta.is_null() && meta.as_object().is_none_or(|m| !m.is_empty()) {
            details { summary { (l.tr("Metadata", "元数据")) } pre { (serde_json::to_string_pretty(meta).unwrap_or_default()) } }
        }
    }
}
