//! The console's pages. Each reads through the query API's functions (the same JSON the API
//! serves) and renders it; each action is the API's command or re-drive with the session's token
//! name as actor.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use licensing_messages::{CommandBody, CommandEnvelope};
use licensing_store::{DeadLetterState, Direction, StoredExchange};
use maud::{Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use super::context::{Console, Ctx, Posted, SignedIn, see_other};
use super::i18n::{Lang, market_time, market_time_of};
use super::timeline::Speaker;
use crate::api::{QueryState, Refusal, licenses};
use crate::evidence;
use crate::evidence::{Window, ledger};

/// Entries of a timeline or ledger shown at most; the evidence pack has them all.
const SHOWN: usize = 200;

/// What a path segment may not hold as is (RFC 3986 unreserved characters stay).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn seg(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

fn license_href(code: &str, sandbox: bool) -> String {
    format!(
        "/console/licenses/{}{}",
        seg(code),
        if sandbox { "?sandbox=true" } else { "" }
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn day_text(v: &Value) -> String {
    v.as_i64()
        .and_then(crate::read_model::time::date_of)
        .unwrap_or_else(|| "—".to_owned())
}

/// The query parameters of a request, without empty values (a GET form sends every field) and
/// without `lang`.
fn params(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .filter(|(k, v)| !v.is_empty() && k != "lang")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn notice(l: Lang, done: Option<&String>) -> Markup {
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
fn command(actor: &str, command: CommandBody) -> CommandEnvelope {
    let mut envelope = CommandEnvelope::new(
        "console",
        koogallery::market_time::unix_millis(OffsetDateTime::now_utc()),
        command,
    );
    envelope.actor = Some(actor.to_owned());
    envelope
}

async fn send(console: &Console, envelope: &CommandEnvelope) -> Result<(), Refusal> {
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

// ---------------------------------------------------------------------------------------------
// Overview

/// One hour's callbacks: answered `000000`, and anything else.
#[derive(Debug, Default, Clone, Copy)]
struct Bar {
    ok: i64,
    other: i64,
}

fn bars(ctx: &Ctx, hours: &[(OffsetDateTime, Bar)]) -> Markup {
    let l = ctx.lang;
    let max = hours
        .iter()
        .map(|(_, b)| b.ok + b.other)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: i64| (n as f64 * 100.0 / max as f64).round();
    html! {
        svg.bars viewBox="0 0 480 122" role="img"
            aria-label=(l.tr("Callbacks per hour over the last 24 hours", "最近 24 小时每小时的回调数")) {
            @for (i, (hour, bar)) in hours.iter().enumerate() {
                @let x = i as f64 * 20.0;
                @let ok = scale(bar.ok);
                @let other = scale(bar.other);
                g {
                    title { (market_time(*hour, ctx.zone)) ": 000000 × " (bar.ok) ", " (l.tr("other", "其他")) " × " (bar.other) }
                    rect.o000000 x=(x + 2.0) y=(100.0 - ok) width="16" height=(ok) {}
                    rect.other x=(x + 2.0) y=(100.0 - ok - other) width="16" height=(other) {}
                    @if i % 3 == 0 {
                        text x=(x + 2.0) y="115" { (format!("{:02}", hour.to_offset(ctx.zone).hour())) }
                    }
                }
            }
        }
        p.legend {
            span.ok { "■ 000000" }
            span.bad { "■ " (l.tr("any other result code", "其他结果码")) }
        }
    }
}

fn totals_table(l: Lang, heading: &str, totals: &[(String, i64)]) -> Markup {
    html! {
        table {
            thead { tr { th { (heading) } th { (l.tr("Count", "数量")) } } }
            tbody {
                @for (outcome, count) in totals {
                    tr { td { code { (outcome) } } td { (count) } }
                }
                @if totals.is_empty() {
                    tr { td colspan="2" { (l.tr("None", "无")) } }
                }
            }
        }
    }
}

fn search_form(l: Lang, q: &str) -> Markup {
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

fn unavailable(l: Lang) -> Markup {
    html! { span.bad { (l.tr("unavailable", "不可用")) } }
}

/// `GET /console/`: readiness, lags, queue and dead letters, callbacks and calls of the last 24
/// hours, heartbeat debt and the probe countdown.
pub(crate) async fn overview(
    SignedIn { ctx }: SignedIn,
    state: web::Data<QueryState>,
    console: web::Data<Console>,
) -> HttpResponse {
    let l = ctx.lang;
    // Each verdict as the page shows it: ready, or the reason in words.
    let projector = crate::metrics::ready(&console.health, &state.store, console.ready_max_lag)
        .await
        .map_err(|reason| reason.to_string());
    let mut peers = Vec::new();
    for (name, url) in &console.peers {
        let verdict = super::context::peer_ready(url).await;
        peers.push((name.clone(), verdict.map_err(|reason| reason.to_string())));
    }
    let queue = console
        .with_bus(async |bus| bus.command_queue_stats().await)
        .await;
    let lags = state
        .store
        .follower_lags(&crate::read_model::FOLLOWERS)
        .await;
    let waiting = state.store.dead_letters_waiting().await;
    let leases = state.store.shard_leases().await;
    let now = OffsetDateTime::now_utc();
    // The start of the hour 23 hours before this one: 24 whole hours, the last one running.
    let seconds = now.unix_timestamp();
    let first_hour = OffsetDateTime::from_unix_timestamp(seconds - seconds.rem_euclid(3600))
        .unwrap_or(now)
        - time::Duration::hours(23);
    let counts = state.store.exchange_counts(first_hour).await;
    let client = state.store.client().await;
    let (debt, probe) = match &client {
        Ok(client) => (
            crate::metrics::heartbeat_debt(
                &***client,
                crate::read_model::time::today(&state.clock, state.day_zone),
            )
            .await
            .ok(),
            crate::read_model::probe_log::ProbeStatus::read(&***client)
                .await
                .ok(),
        ),
        Err(_) => (None, None),
    };
    drop(client);

    let mut hours: Vec<(OffsetDateTime, Bar)> = (0..24)
        .map(|i| (first_hour + time::Duration::hours(i), Bar::default()))
        .collect();
    let mut callbacks: Vec<(String, i64)> = Vec::new();
    let mut calls: Vec<(String, i64)> = Vec::new();
    if let Ok(counts) = &counts {
        for c in counts {
            let totals = match c.direction {
                Direction::In => {
                    if let Some((_, bar)) = hours.iter_mut().find(|(h, _)| *h == c.hour) {
                        if c.outcome == "000000" {
                            bar.ok += c.count;
                        } else {
                            bar.other += c.count;
                        }
                    }
                    &mut callbacks
                }
                Direction::Out => &mut calls,
            };
            match totals.iter_mut().find(|(o, _)| *o == c.outcome) {
                Some((_, n)) => *n += c.count,
                None => totals.push((c.outcome.clone(), c.count)),
            }
        }
    }
    let days_left = probe
        .as_ref()
        .map(|p| licensing_domain::days_until_freeze(p.failed_days));
    let ready_cell = |verdict: &Result<(), String>| {
        html! {
            @match verdict {
                Ok(()) => span.ok { (l.tr("ready", "就绪")) },
                Err(reason) => span.bad { (l.tr("not ready", "未就绪")) ": " (reason) },
            }
        }
    };
    let body = html! {
        h1 { (l.tr("Overview", "概览")) }
        (search_form(l, ""))
        @if let Some(days) = days_left {
            @if days < licensing_domain::FREEZE_AFTER_FAILED_DAYS {
                section.card aria-labelledby="freeze" {
                    h2 #freeze { (l.tr("Probe (拨测): days until the marketplace freezes the product", "拨测：距云商店冻结商品还有（天）")) }
                    p.countdown.bad { (days) }
                    p { a href="/console/probe" { (l.tr("See the probe runs", "查看拨测记录")) } }
                }
            }
        }
        div.cards {
            section.card {
                h2 { (l.tr("Readiness", "就绪状态")) }
                dl.facts {
                    dt { "projector" } dd { (ready_cell(&projector)) }
                    @for (name, verdict) in &peers {
                        dt { (name) } dd { (ready_cell(verdict)) }
                    }
                    @if peers.is_empty() {
                        dt { "ingress, processor" }
                        dd.muted { (l.tr("not configured (LICENSING_CONSOLE_PEERS)", "未配置 (LICENSING_CONSOLE_PEERS)")) }
                    }
                }
            }
            section.card {
                h2 { (l.tr("Command queue", "命令队列")) }
                dl.facts {
                    @match &queue {
                        Ok((depth, consumers)) => {
                            dt { (l.tr("Waiting", "等待中")) } dd { (depth) }
                            dt { (l.tr("Consumers (all shards)", "消费者（所有分片）")) }
                            dd { @if *consumers == 0 { span.bad { "0" } } @else { (consumers) } }
                        },
                        Err(_) => { dt { (l.tr("Broker", "消息代理")) } dd { (unavailable(l)) } },
                    }
                    dt { a href="/console/dead-letters" { (l.tr("Dead letters waiting", "等待中的死信")) } }
                    dd {
                        @match &waiting {
                            Ok(0) => span.ok { "0" },
                            Ok(n) => span.bad { (n) },
                            Err(_) => (unavailable(l)),
                        }
                    }
                }
            }
            section.card #shards {
                h2 { (l.tr("Shards and their processors", "分片及其处理器")) }
                dl.facts {
                    @match &leases {
                        Ok(leases) => {
                            @for shard in 0..i32::from(console.bus_config.shards) {
                                dt { (l.tr("Shard", "分片")) " " (shard) }
                                dd {
                                    @match leases.iter().find(|(s, _, live)| *s == shard && *live) {
                                        Some((_, holder, _)) => span.ok { (holder) },
                                        None => span.bad { (l.tr("no processor holds it", "无处理器持有")) },
                                    }
                                }
                            }
                        },
                        Err(_) => { dt { "—" } dd { (unavailable(l)) } },
                    }
                }
            }
            section.card {
                h2 { (l.tr("Follower lag", "跟随器延迟")) }
                dl.facts {
                    @match &lags {
                        Ok(lags) => {
                            @for (name, seconds) in lags {
                                dt { (super::i18n::follower(l, name)) } dd { (format!("{seconds:.1} s")) }
                            }
                        },
                        Err(_) => { dt { "—" } dd { (unavailable(l)) } },
                    }
                }
            }
            section.card {
                h2 { (l.tr("Heartbeat (心跳) debt", "心跳欠账")) }
                p.muted { (l.tr("Days of use in the last 7 market days without an acknowledged heartbeat", "最近 7 个市场日内有使用但心跳未被确认的天数")) }
                p.countdown {
                    @match debt { Some(n) => (n), None => (unavailable(l)) }
                }
            }
            section.card {
                h2 { (l.tr("Probe (拨测)", "拨测")) }
                dl.facts {
                    @match &probe {
                        Some(p) => {
                            dt { (l.tr("Failed days in a row", "连续失败天数")) } dd { (p.failed_days) }
                            dt { (l.tr("Days until freeze (冻结)", "距冻结天数")) } dd { (days_left.unwrap_or(0)) }
                            dt { (l.tr("Last success", "最近成功")) }
                            dd { (p.last_success_at.map_or_else(|| "—".to_owned(), |t| market_time(t, ctx.zone))) }
                        },
                        None => { dt { "—" } dd { (unavailable(l)) } },
                    }
                }
            }
        }
        h2 { (l.tr("Callbacks in the last 24 hours, by result code", "最近 24 小时的回调（按结果码）")) }
        @if counts.is_err() { p { (unavailable(l)) } }
        (bars(&ctx, &hours))
        div.scroll { (totals_table(l, l.tr("Result code", "结果码"), &callbacks)) }
        h2 { (l.tr("Calls to the marketplace in the last 24 hours, by disposition", "最近 24 小时对云商店的调用（按处置）")) }
        div.scroll { (totals_table(l, l.tr("Disposition", "处置"), &calls)) }
    };
    ctx.page(StatusCode::OK, l.tr("Overview", "概览"), body)
}

// ---------------------------------------------------------------------------------------------
// Licenses

const STATUSES: [&str; 8] = [
    "unregistered",
    "registered",
    "activation_pending",
    "awaiting_claim",
    "activation_failed",
    "active",
    "frozen",
    "released",
];

/// `GET /console/licenses`: the query API's list with its filters, 50 a page.
pub(crate) async fn licenses(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let l = ctx.lang;
    let mut pairs = params(&req);
    if !pairs.iter().any(|(k, _)| k == "limit") {
        pairs.push(("limit".to_owned(), "50".to_owned()));
    }
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    // The API's filters; the console adds the order by expiry, whose cursor it reads itself.
    let sort = if get("sort") == "expire_at" {
        licenses::Sort::ExpireAt
    } else {
        licenses::Sort::License
    };
    let api: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "sort" && k != "cursor")
        .cloned()
        .collect();
    let filter = licenses::list_filter(&encode(&api)).and_then(|mut filter| {
        filter.sort = sort;
        filter.cursor = pairs
            .iter()
            .find(|(k, _)| k == "cursor")
            .map(|(_, c)| licenses::Cursor::parse(sort, c))
            .transpose()?;
        Ok(filter)
    });
    let page = match filter {
        Ok(filter) => licenses::list_page(&state.store, &filter).await,
        Err(refusal) => Err(refusal),
    };
    let sandbox = get("sandbox") == "true";
    let form = html! {
        form.filters method="get" action="/console/licenses" role="search" {
            label {
                (l.tr("Code prefix, order id or product", "授权码前缀、订单号或产品"))
                input type="search" name="q" value=(get("q"));
            }
            label {
                (l.tr("Status", "状态"))
                select name="status" {
                    option value="" { (l.tr("any", "全部")) }
                    @for s in STATUSES {
                        option value=(s) selected[get("status") == s] { (l.status(s)) }
                    }
                }
            }
            label {
                (l.tr("Access mode", "访问模式"))
                select name="access_mode" {
                    option value="" { (l.tr("any", "全部")) }
                    @for m in licensing_domain::AccessMode::ALL {
                        option value=(m.as_str()) selected[get("access_mode") == m.as_str()] { (l.status(m.as_str())) }
                    }
                }
            }
            label {
                (l.tr("Sort", "排序"))
                select name="sort" {
                    option value="license" selected[get("sort") != "expire_at"] { (l.tr("by code", "按授权码")) }
                    option value="expire_at" selected[get("sort") == "expire_at"] { (l.tr("by expiry", "按到期时间")) }
                }
            }
            label {
                (l.tr("Sandbox (test traffic)", "沙箱（测试流量）"))
                input type="checkbox" name="sandbox" value="true" checked[sandbox];
            }
            button type="submit" { (l.tr("Search", "搜索")) }
        }
    };
    let (status, results) = match &page {
        Ok(page) => {
            let items = page["items"].as_array().cloned().unwrap_or_default();
            let next = page["next_cursor"].as_str().map(|cursor| {
                let mut next: Vec<(String, String)> = pairs
                    .iter()
                    .filter(|(k, _)| k != "cursor")
                    .cloned()
                    .collect();
                next.push(("cursor".to_owned(), cursor.to_owned()));
                format!("/console/licenses?{}", encode(&next))
            });
            (
                StatusCode::OK,
                html! {
                    div.scroll {
                        table {
                            thead { tr {
                                th { (l.tr("License code (授权码)", "授权码")) }
                                th { (l.tr("Status", "状态")) }
                                th { (l.tr("Access mode", "访问模式")) }
                                th { (l.tr("Expires", "到期时间")) }
                                th { (l.tr("Last heartbeat (心跳) day", "最近心跳日")) }
                                th { (l.tr("Product", "产品")) }
                                th { (l.tr("Order", "订单")) }
                            } }
                            tbody {
                                @for item in &items {
                                    @let code = item["license"].as_str().unwrap_or("");
                                    tr {
                                        td { a href=(license_href(code, sandbox)) { code { (code) } } }
                                        td { (l.status(item["status"].as_str().unwrap_or(""))) }
                                        td { (l.status(item["access_mode"].as_str().unwrap_or(""))) }
                                        td { (market_time_of(&item["expire_at"], ctx.zone)) }
                                        td { (day_text(&item["last_heartbeat_day"])) }
                                        td { (text(&item["product_id"])) }
                                        td { (text(&item["order_id"])) }
                                    }
                                }
                                @if items.is_empty() {
                                    tr { td colspan="7" { (l.tr("No license matches.", "没有匹配的授权码。")) } }
                                }
                            }
                        }
                    }
                    @if let Some(next) = next {
                        p { a rel="next" href=(next) { (l.tr("Next page →", "下一页 →")) } }
                    }
                },
            )
        }
        Err(refusal) => (
            refusal.status,
            html! { p.error role="alert" { code { (refusal.code) } ": " (refusal.message) } },
        ),
    };
    ctx.page(
        status,
        l.tr("Licenses", "授权码"),
        html! {
            h1 { (l.tr("Licenses (授权码)", "授权码")) }
            (form)
            (results)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// One license

/// `as_of` from the page's form: RFC 3339, or a `datetime-local` value read in the market zone.
fn as_of_param(raw: &str, zone: time::UtcOffset) -> Result<OffsetDateTime, Refusal> {
    if let Ok(t) = OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let long = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let short = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    PrimitiveDateTime::parse(raw, long)
        .or_else(|_| PrimitiveDateTime::parse(raw, short))
        .map(|t| t.assume_offset(zone))
        .map_err(|_| Refusal::invalid_query("as_of must be a date and time"))
}

fn pretty(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
}

/// A payload: pretty JSON when it is JSON, and its exact bytes (as text when UTF-8, else base64).
fn payload(l: Lang, label: &str, bytes: &[u8], meta: &Value) -> Markup {
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

fn exchange_details(l: Lang, stored: &StoredExchange) -> Markup {
    let e = &stored.exchange;
    html! {
        details.raw {
            summary { (l.tr("Raw exchange", "原始报文")) }
            (payload(l, l.tr("Request", "请求"), &e.request, &e.request_meta))
            @match &e.response {
                Some(response) => (payload(l, l.tr("Answer", "应答"), response, &e.response_meta)),
                None => {
                    h4 { (l.tr("Answer", "应答")) }
                    pre { (serde_json::to_string_pretty(&e.response_meta).unwrap_or_default()) }
                },
            }
        }
    }
}

fn side_label(l: Lang, side: &str) -> &'static str {
    match side {
        "marketplace_said" => l.tr("Marketplace said", "云商店告知"),
        "we_concluded" => l.tr("We concluded", "我方结论"),
        _ => l.tr("We told", "我方告知"),
    }
}

/// `GET /console/licenses/{code}[?sandbox=true][&as_of=]`: the state card, actions, timeline and
/// three-way ledger with raw exchanges.
pub(crate) async fn license(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let l = ctx.lang;
    let code = path.into_inner();
    let params: HashMap<String, String> = params(&req).into_iter().collect();
    let sandbox = params.get("sandbox").is_some_and(|s| s == "true");
    let at = match params
        .get("as_of")
        .map(|raw| as_of_param(raw, ctx.zone))
        .transpose()
    {
        Ok(at) => at,
        Err(refusal) => return ctx.refusal(&refusal),
    };
    let view = match licenses::license_body(&state.store, &code, sandbox, None).await {
        Ok(view) => view,
        Err(refusal) => return ctx.refusal(&refusal),
    };
    let then = match at {
        Some(at) => match licenses::license_body(&state.store, &code, sandbox, Some(at)).await {
            Ok(then) => Some(Ok(then)),
            Err(refusal) if refusal.status == StatusCode::NOT_FOUND => Some(Err(refusal)),
            Err(refusal) => return ctx.refusal(&refusal),
        },
        None => None,
    };
    let window = Window {
        sandbox,
        from: None,
        to: at.map(|t| t + time::Duration::microseconds(1)),
    };
    let evidence = match evidence::gather_recent(&state.store, &code, &window, SHOWN as i64).await {
        Ok(evidence) => evidence,
        Err(e) => return ctx.refusal(&Refusal::of_gathering(&e)),
    };
    let ledger = ledger::ledger(&evidence);
    let exchanges: HashMap<Uuid, &StoredExchange> = evidence
        .exchanges
        .iter()
        .map(|s| (s.exchange.id, s))
        .collect();
    let here = license_href(&code, sandbox);
    let action = |what: &str| format!("/console/licenses/{}/{what}", seg(&code));
    let evidence_href = format!(
        "/console/licenses/{}/evidence{}",
        seg(&code),
        if sandbox { "?sandbox=true" } else { "" }
    );
    let activation = &view["activation"];
    let as_of_value = at.map(|t| {
        let t = t.to_offset(ctx.zone);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    });
    let speaker = Speaker {
        lang: l,
        zone: ctx.zone,
    };
    let body = html! {
        h1 { (l.tr("License (授权码)", "授权码")) " " code { (code) } @if sandbox { " " span.warn { (l.tr("sandbox", "沙箱")) } } }
        (notice(l, params.get("done")))
        div.cards {
            section.card aria-labelledby="now" {
                h2 #now { (l.tr("Current state", "当前状态")) }
                dl.facts {
                    dt { (l.tr("Status", "状态")) } dd #status { (l.status(view["status"].as_str().unwrap_or(""))) }
                    dt { (l.tr("Access mode", "访问模式")) } dd #access-mode { (l.status(view["access_mode"].as_str().unwrap_or(""))) }
                    dt { (l.tr("Access until", "可用至")) } dd { (market_time_of(&view["access_until"], ctx.zone)) }
                    dt { (l.tr("Data kept until", "数据保留至")) } dd { (market_time_of(&view["data_kept_until"], ctx.zone)) }
                    dt { (l.tr("Expires", "到期时间")) } dd { (market_time_of(&view["expire_at"], ctx.zone)) }
                    dt { (l.tr("Activation", "激活")) }
                    dd #activation {
                        (l.status(activation["status"].as_str().unwrap_or("")))
                        @if let Some(error) = activation["last_error"].as_str() { " — " span.bad { (error) } }
                    }
                    dt { (l.tr("Drift", "差异")) }
                    dd #drift {
                        @if view["drift"].as_bool() == Some(true) {
                            span.bad { (l.tr("the marketplace and we disagree", "云商店与我方记录不一致")) }
                        } @else { (l.tr("none", "无")) }
                    }
                    dt { (l.tr("Last heartbeat (心跳) day", "最近心跳日")) } dd { (day_text(&view["last_heartbeat_day"])) }
                    dt { (l.tr("Product", "产品")) } dd #product { (text(&view["product_id"])) }
                    dt { (l.tr("Order", "订单")) } dd #order { (text(&view["order_id"])) }
                    dt { (l.tr("Version", "版本")) } dd { (text(&view["version"])) }
                }
            }
            @if let Some(then) = &then {
                section.card aria-labelledby="then" {
                    h2 #then { (l.tr("As of", "截至")) " " (at.map(|t| market_time(t, ctx.zone)).unwrap_or_default()) }
                    @match then {
                        Ok(then) => dl.facts {
                            dt { (l.tr("Status", "状态")) } dd { (l.status(then["status"].as_str().unwrap_or(""))) }
                            dt { (l.tr("Access mode", "访问模式")) } dd { (l.status(then["access_mode"].as_str().unwrap_or(""))) }
                            dt { (l.tr("Expires (as the marketplace wrote it)", "到期时间（云商店原文）")) } dd { (text(&then["expire_time"])) }
                            dt { (l.tr("Version", "版本")) } dd { (text(&then["version"])) }
                        },
                        Err(_) => p { (l.tr("The license did not exist yet.", "当时该授权码尚不存在。")) },
                    }
                }
            }
        }
        div.actions {
            @if !sandbox {
                form.inline method="post" action=(action("activation")) {
                    (ctx.csrf_field())
                    button type="submit" { (l.tr("Request activation", "请求激活")) }
                }
            }
            a href=(evidence_href) download { (l.tr("Download the evidence pack", "下载证据包")) }
            form.inline method="get" action=(here.split('?').next().unwrap_or(&here)) {
                @if sandbox { input type="hidden" name="sandbox" value="true"; }
                label { (l.tr("As of", "截至")) " "
                    input type="datetime-local" name="as_of" step="1" value=[as_of_value.as_deref()];
                }
                " "
                button.secondary type="submit" { (l.tr("Show", "查看")) }
            }
        }
        @if view["drift"].as_bool() == Some(true) && !sandbox {
            form.stack method="post" action=(action("drift")) {
                (ctx.csrf_field())
                fieldset {
                    legend { (l.tr("Resolve the drift: whose values are kept?", "处理差异：保留哪一方的值？")) }
                    label { input type="radio" name="accept" value="marketplace" required; " " (l.tr("The marketplace's", "云商店的")) }
                    label { input type="radio" name="accept" value="ours"; " " (l.tr("Ours", "我方的")) }
                }
                label for="note" { (l.tr("Note (why)", "说明（原因）")) }
                textarea #note name="note" rows="3" maxlength="1000" required {}
                button type="submit" { (l.tr("Resolve drift", "处理差异")) }
            }
        }
        h2 { (l.tr("Timeline", "时间线")) }
        @let events: Vec<_> = evidence.events.iter().rev().collect();
        @if events.last().is_some_and(|e| e.stream_version > 1) {
            p.muted { (l.tr("The newest events; the evidence pack holds all of them.", "仅显示最新事件；证据包包含全部。")) " " (events.len()) " / " (events.first().map_or(0, |e| e.stream_version)) }
        }
        div.scroll {
            table #timeline {
                thead { tr {
                    th { "#" } th { (l.tr("Recorded", "记录时间")) } th { (l.tr("What happened", "发生了什么")) }
                    th { (l.tr("Source", "来源")) }
                } }
                tbody {
                    @for event in &events {
                        tr {
                            td { (event.stream_version) }
                            td { (market_time(event.recorded_at, ctx.zone)) }
                            td { (speaker.cell(event)) }
                            td {
                                (event.metadata.source.as_deref().unwrap_or("—"))
                                @if let Some(actor) = &event.metadata.actor { " (" (actor) ")" }
                            }
                        }
                    }
                }
            }
        }
        h2 { (l.tr("Ledger: what the marketplace said, what we concluded, what we told it", "对账：云商店告知、我方结论、我方告知")) }
        @if ledger.len() > SHOWN {
            p.muted { (l.tr("Latest entries shown; the evidence pack holds all of them:", "仅显示最新条目；证据包包含全部：")) " " (SHOWN) " / " (ledger.len()) }
        }
        div.scroll {
            table #ledger {
                thead { tr {
                    th { (l.tr("When", "时间")) } th { (l.tr("Side", "方向")) } th { (l.tr("What", "内容")) }
                } }
                tbody {
                    @for entry in ledger.iter().skip(ledger.len().saturating_sub(SHOWN)) {
                        tr {
                            td { (market_time(entry.at, ctx.zone)) }
                            td { (side_label(l, entry.side())) }
                            td {
                                code { (entry.kind) } " " (entry.summary)
                                @if matches!(entry.kind.as_str(), "callback" | "activate_request" | "heartbeat_request") {
                                    @if let Some(stored) = entry.exchange_id.and_then(|id| exchanges.get(&id)) {
                                        (exchange_details(l, stored))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !evidence.refusals.is_empty() {
            h2 { (l.tr("Refused requests naming this license", "提及此授权码的被拒请求")) }
            p.muted { (l.tr("Failed verification or validation; anyone can send these, so they are kept apart from the ledger.", "未通过校验；任何人都可发送此类请求，故与对账分开显示。")) " " (evidence.refusals.len()) @if evidence.refusals_truncated() { "+" } }
            div.scroll {
                table #refusals {
                    thead { tr { th { (l.tr("When", "时间")) } th { (l.tr("What", "内容")) } } }
                    tbody {
                        @for stored in evidence.refusals.iter().rev().take(SHOWN) {
                            tr {
                                td { (market_time(stored.exchange.at, ctx.zone)) }
                                td { (evidence::refusal_summary(stored)) (exchange_details(l, stored)) }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, &code, body)
}

/// `POST /console/licenses/{code}/activation`: the internal API's activation request.
pub(crate) async fn request_activation(
    posted: Posted,
    path: web::Path<String>,
    console: web::Data<Console>,
) -> HttpResponse {
    let Posted { ctx, session, .. } = &posted;
    let code = path.into_inner();
    if licensing_domain::LicenseCode::parse(&code).is_err() {
        return ctx.refusal(&Refusal::unknown_license(&code));
    }
    let envelope = command(
        &session.actor,
        CommandBody::RequestActivation {
            license: code.clone(),
            real_effect_time: None,
        },
    );
    if let Err(refusal) = send(&console, &envelope).await {
        return ctx.refusal(&refusal);
    }
    tracing::info!(actor = %session.actor, license = %code, message_id = %envelope.message_id, "console: activation requested");
    see_other(&format!("{}?done=activation", license_href(&code, false)))
}

/// `POST /console/licenses/{code}/drift`: the internal API's drift resolution.
pub(crate) async fn resolve_drift(
    posted: Posted,
    path: web::Path<String>,
    console: web::Data<Console>,
) -> HttpResponse {
    let Posted { ctx, session, .. } = &posted;
    let code = path.into_inner();
    let field = |name: &str| posted.field(name);
    let resolution = match CommandBody::resolve_drift(&code, field("accept"), field("note")) {
        Ok(resolution) => resolution,
        Err(message) => {
            return ctx.refusal(&Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                message,
            ));
        }
    };
    let envelope = command(&session.actor, resolution);
    if let Err(refusal) = send(&console, &envelope).await {
        return ctx.refusal(&refusal);
    }
    tracing::info!(actor = %session.actor, license = %code, accept = field("accept"), "console: drift resolution sent");
    see_other(&format!("{}?done=drift", license_href(&code, false)))
}

/// `GET /console/licenses/{code}/evidence[?sandbox=true]`: the evidence pack download.
pub(crate) async fn evidence(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let download = match crate::api::exchanges::window(req.query_string()) {
        Ok(window) => crate::api::exchanges::pack_download(&state, &path, &window).await,
        Err(refusal) => Err(refusal),
    };
    download.unwrap_or_else(|refusal| ctx.refusal(&refusal))
}

// ---------------------------------------------------------------------------------------------
// Dead letters

/// `GET /console/dead-letters[?state=waiting|redriven|all]`.
pub(crate) async fn dead_letters(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let l = ctx.lang;
    let params: HashMap<String, String> = params(&req).into_iter().collect();
    let shown = params.get("state").map_or("waiting", String::as_str);
    let which = match shown {
        "redriven" => DeadLetterState::Redriven,
        "all" => DeadLetterState::All,
        _ => DeadLetterState::Waiting,
    };
    let list = match crate::api::dead_letters::list_body(&state, which, 200, None).await {
        Ok(list) => list,
        Err(refusal) => return ctx.refusal(&refusal),
    };
    let letters = list["dead_letters"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { (l.tr("Dead letters", "死信")) }
        (notice(l, params.get("done")))
        p.muted { (l.tr("Commands the processor could not apply after its retries. Re-driving one sends it back to the command queue; it is applied once.",
                         "处理器重试后仍无法处理的命令。重投后命令回到命令队列，只会被处理一次。")) }
        div.actions {
            form.filters method="get" action="/console/dead-letters" {
                label {
                    (l.tr("Show", "显示"))
                    select name="state" {
                        option value="waiting" selected[shown == "waiting"] { (l.tr("waiting", "等待中")) }
                        option value="redriven" selected[shown == "redriven"] { (l.tr("re-driven", "已重投")) }
                        option value="all" selected[shown == "all"] { (l.tr("all", "全部")) }
                    }
                }
                button.secondary type="submit" { (l.tr("Show", "显示")) }
            }
            form.inline method="post" action="/console/dead-letters/redrive" {
                (ctx.csrf_field())
                button type="submit" { (l.tr("Re-drive all waiting", "重投全部等待中的死信")) }
            }
        }
        div.scroll {
            table #dead-letters {
                thead { tr {
                    th { (l.tr("Parked", "进入时间")) } th { (l.tr("Reason", "原因")) } th { (l.tr("License", "授权码")) }
                    th { (l.tr("Kind", "类型")) } th { (l.tr("State", "状态")) } th { }
                } }
                tbody {
                    @for letter in &letters {
                        @let id = letter["id"].as_str().unwrap_or("");
                        tr {
                            td { (market_time_of(&letter["parked_at"], ctx.zone)) }
                            td { (text(&letter["reason"])) }
                            td {
                                @match letter["license"].as_str().filter(|c| !c.is_empty()) {
                                    Some(code) => a href=(license_href(code, false)) { code { (code) } },
                                    None => "—",
                                }
                            }
                            td { (text(&letter["kind"])) }
                            td {
                                @if letter["redriven_at"].is_null() { span.bad { (l.tr("waiting", "等待中")) } }
                                @else {
                                    (l.tr("re-driven", "已重投")) " " (market_time_of(&letter["redriven_at"], ctx.zone))
                                    " (" (text(&letter["redriven_by"])) ")"
                                }
                            }
                            td { a href=(format!("/console/dead-letters/{}", seg(id))) { (l.tr("Inspect", "查看")) } }
                        }
                    }
                    @if letters.is_empty() {
                        tr { td colspan="6" { (l.tr("None.", "无。")) } }
                    }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, l.tr("Dead letters", "死信"), body)
}

/// `GET /console/dead-letters/{id}`: one dead letter with its body.
pub(crate) async fn dead_letter(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let l = ctx.lang;
    let unknown = || Refusal::unknown_dead_letter(path.as_str());
    let Ok(id) = Uuid::parse_str(&path) else {
        return ctx.refusal(&unknown());
    };
    let letter = match state.store.dead_letter(id).await {
        Ok(Some(letter)) => letter,
        Ok(None) => return ctx.refusal(&unknown()),
        Err(e) => return ctx.refusal(&Refusal::unavailable(&e)),
    };
    let json = crate::api::dead_letters::letter_json(&letter);
    let params: HashMap<String, String> = params(&req).into_iter().collect();
    let body = html! {
        h1 { (l.tr("Dead letter", "死信")) " " code { (id) } }
        (notice(l, params.get("done")))
        dl.facts {
            dt { (l.tr("Parked", "进入时间")) } dd { (market_time_of(&json["parked_at"], ctx.zone)) }
            dt { (l.tr("Reason", "原因")) } dd #reason { (text(&json["reason"])) }
            dt { (l.tr("License", "授权码")) }
            dd { @match json["license"].as_str().filter(|c| !c.is_empty()) {
                Some(code) => a href=(license_href(code, false)) { code { (code) } },
                None => "—",
            } }
            dt { (l.tr("Kind", "类型")) } dd { (text(&json["kind"])) }
            dt { (l.tr("Message id", "消息 ID")) } dd { code { (text(&json["message_id"])) } }
            dt { (l.tr("State", "状态")) }
            dd #state {
                @if json["redriven_at"].is_null() { span.bad { (l.tr("waiting", "等待中")) } }
                @else {
                    (l.tr("re-driven", "已重投")) " " (market_time_of(&json["redriven_at"], ctx.zone))
                    " (" (text(&json["redriven_by"])) ")"
                }
            }
        }
        @if json["redriven_at"].is_null() {
            form.inline method="post" action=(format!("/console/dead-letters/{id}/redrive")) {
                (ctx.csrf_field())
                button type="submit" { (l.tr("Re-drive", "重投")) }
            }
        }
        (payload(l, l.tr("Message", "消息"), &letter.letter.body, &Value::Null))
    };
    ctx.page(StatusCode::OK, l.tr("Dead letter", "死信"), body)
}

/// `POST /console/dead-letters/{id}/redrive`.
pub(crate) async fn redrive(
    posted: Posted,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let Posted { ctx, session, .. } = &posted;
    let Ok(id) = Uuid::parse_str(&path) else {
        return ctx.refusal(&Refusal::unknown_dead_letter(path.as_str()));
    };
    match crate::api::dead_letters::redrive_as(&state, Some(id), &session.actor).await {
        Ok(letters) if !letters.is_empty() => {
            see_other(&format!("/console/dead-letters/{id}?done=redriven"))
        }
        Ok(_) => see_other(&format!("/console/dead-letters/{id}?done=already")),
        Err(refusal) => ctx.refusal(&refusal),
    }
}

/// `POST /console/dead-letters/redrive`: every waiting one.
pub(crate) async fn redrive_all(posted: Posted, state: web::Data<QueryState>) -> HttpResponse {
    let Posted { ctx, session, .. } = &posted;
    match crate::api::dead_letters::redrive_as(&state, None, &session.actor).await {
        Ok(letters) if letters.is_empty() => see_other("/console/dead-letters?done=none"),
        Ok(_) => see_other("/console/dead-letters?state=all&done=redriven"),
        Err(refusal) => ctx.refusal(&refusal),
    }
}

// ---------------------------------------------------------------------------------------------
// Probe

/// `GET /console/probe`: the watchdog's runs per case, failed days, the marketplace's probes.
pub(crate) async fn probe(
    SignedIn { ctx }: SignedIn,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let l = ctx.lang;
    let probe = match crate::api::probe::probe_body(&state, 20).await {
        Ok(probe) => probe,
        Err(refusal) => return ctx.refusal(&refusal),
    };
    let watchdog = &probe["watchdog"];
    let days_left = probe["days_until_freeze"].as_u64().unwrap_or(0);
    let runs = probe["runs"].as_array().cloned().unwrap_or_default();
    let seen = probe["marketplace_probes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let body = html! {
        h1 { (l.tr("Probe (拨测)", "拨测")) }
        p.muted { (l.tr("The marketplace probes the callback URL twice a day and freezes (冻结) the product after 5 days of failures. The watchdog runs the same probe first.",
                         "云商店每天两次拨测回调地址，连续 5 天失败将冻结商品。看门狗会先行执行同样的拨测。")) }
        div.cards {
            section.card {
                h2 { (l.tr("Days until freeze (冻结)", "距冻结天数")) }
                p.countdown.bad[days_left < 5] #days-until-freeze { (days_left) }
                dl.facts {
                    dt { (l.tr("Failed days in a row", "连续失败天数")) } dd { (text(&probe["failed_days"])) }
                    dt { (l.tr("Last run", "最近运行")) } dd { (market_time_of(&probe["last_run_at"], ctx.zone)) }
                    dt { (l.tr("Last success", "最近成功")) } dd { (market_time_of(&probe["last_success_at"], ctx.zone)) }
                    dt { (l.tr("Marketplace probe last seen", "最近一次云商店拨测")) } dd { (market_time_of(&probe["marketplace_last_seen_at"], ctx.zone)) }
                }
            }
            section.card {
                h2 { (l.tr("Watchdog", "看门狗")) }
                dl.facts {
                    @if watchdog["configured"].as_bool() == Some(true) {
                        dt { "URL" } dd { (text(&watchdog["url"])) }
                        dt { (l.tr("Cases", "用例")) } dd { (watchdog["cases"].as_array().map(|c| c.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        dt { (l.tr("Next run", "下次运行")) } dd { (market_time_of(&watchdog["next_run_at"], ctx.zone)) }
                    } @else {
                        dt { (l.tr("Configured", "已配置")) } dd.bad { (l.tr("no (LICENSING_PROBE_CASES)", "否 (LICENSING_PROBE_CASES)")) }
                    }
                    dt { (l.tr("Schedule", "计划")) }
                    dd { (watchdog["schedule"].as_array().map(|c| c.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()) " UTC" (text(&watchdog["time_zone"])) }
                }
            }
        }
        h2 { (l.tr("Recent watchdog runs", "最近的看门狗运行")) }
        div.scroll {
            table #probe-runs {
                thead { tr {
                    th { (l.tr("Run", "运行")) } th { (l.tr("Case", "用例")) } th { (l.tr("Result", "结果")) }
                    th { "HTTP" } th { (l.tr("Answer", "应答")) } th { (l.tr("Latency", "耗时")) }
                } }
                tbody {
                    @for run in &runs {
                        @for case in run["cases"].as_array().into_iter().flatten() {
                            tr {
                                td { (market_time_of(&run["run_at"], ctx.zone)) }
                                td { (text(&case["case"])) }
                                td {
                                    @if case["passed"].as_bool() == Some(true) { span.ok { (l.tr("passed", "通过")) } }
                                    @else { span.bad { (l.tr("failed", "失败")) } " " (text(&case["error"])) }
                                }
                                td { (text(&case["http_status"])) }
                                td { code { (text(&case["answer"])) } }
                                td { @if let Some(ms) = case["latency_ms"].as_i64() { (ms) " ms" } @else { "—" } }
                            }
                        }
                    }
                    @if runs.is_empty() { tr { td colspan="6" { (l.tr("No run yet.", "尚无运行记录。")) } } }
                }
            }
        }
        h2 { (l.tr("Marketplace probes seen", "收到的云商店拨测")) }
        div.scroll {
            table {
                thead { tr { th { (l.tr("Seen", "时间")) } th { (l.tr("License", "授权码")) } th { (l.tr("Activity", "活动")) } } }
                tbody {
                    @for s in &seen {
                        tr {
                            td { (market_time_of(&s["seen_at"], ctx.zone)) }
                            td { code { (text(&s["license"])) } }
                            td { (text(&s["activity"])) }
                        }
                    }
                    @if seen.is_empty() { tr { td colspan="3" { (l.tr("None seen yet.", "尚未收到。")) } } }
                }
            }
        }
    };
    ctx.page(StatusCode::OK, l.tr("Probe", "拨测"), body)
}
