//! One license's page: its state, its actions (activation, drift resolution, the evidence pack),
//! its timeline and its three-way ledger with the raw exchanges.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_messages::CommandBody;
use licensing_store::StoredExchange;
use maud::{Markup, html};
use time::{OffsetDateTime, PrimitiveDateTime};
use uuid::Uuid;

use super::context::{Console, Ctx, Posted, SignedIn, see_other};
use super::i18n::{Lang, market_time, market_time_of};
use super::timeline::Speaker;
use super::widgets::*;
use crate::api::{QueryState, Refusal, licenses};
use crate::evidence;
use crate::evidence::{Window, ledger};

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
    match read_license(&ctx, &req, path.into_inner(), &state).await {
        Ok(page) => {
            let code = page.code.clone();
            ctx.page(StatusCode::OK, &code, render_license(&ctx, page))
        }
        Err(refusal) => ctx.refusal(&refusal),
    }
}

/// What one license's page shows, read before anything is rendered.
struct LicensePage {
    code: String,
    sandbox: bool,
    /// The instant asked for (`as_of`), if any.
    at: Option<OffsetDateTime>,
    params: HashMap<String, String>,
    /// Its view now.
    view: serde_json::Value,
    /// Its state at `at`: none asked, the state, or that it did not exist yet.
    then: Option<Result<serde_json::Value, Refusal>>,
    /// Its newest events, exchanges and refusals (up to `at`).
    evidence: evidence::Evidence,
}

async fn read_license(
    ctx: &Ctx,
    req: &HttpRequest,
    code: String,
    state: &QueryState,
) -> Result<LicensePage, Refusal> {
    let params: HashMap<String, String> = params(req).into_iter().collect();
    let sandbox = params.get("sandbox").is_some_and(|s| s == "true");
    let at = params
        .get("as_of")
        .map(|raw| as_of_param(raw, ctx.zone))
        .transpose()?;
    let view = licenses::license_body(&state.store, &code, sandbox, None).await?;
    let then = match at {
        Some(at) => match licenses::license_body(&state.store, &code, sandbox, Some(at)).await {
            Ok(then) => Some(Ok(then)),
            Err(refusal) if refusal.status == StatusCode::NOT_FOUND => Some(Err(refusal)),
            Err(refusal) => return Err(refusal),
        },
        None => None,
    };
    let window = Window {
        sandbox,
        from: None,
        to: at.map(|t| t + time::Duration::microseconds(1)),
    };
    let evidence = evidence::gather_recent(&state.store, &code, &window, SHOWN as i64)
        .await
        .map_err(|e| Refusal::of_gathering(&e))?;
    Ok(LicensePage {
        code,
        sandbox,
        at,
        params,
        view,
        then,
        evidence,
    })
}

fn render_license(ctx: &Ctx, page: LicensePage) -> Markup {
    let LicensePage {
        code,
        sandbox,
        at,
        params,
        view,
        then,
        evidence,
    } = page;
    let l = ctx.lang;
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
    // The datetime-local input's value: the market time with a `T`.
    let as_of_value = at.map(|t| super::i18n::clock_time(t, ctx.zone).replacen(' ', "T", 1));
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
    body
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
