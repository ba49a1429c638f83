//! The dead-letter pages: the list, one letter with its body, and the re-drives.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use licensing_store::DeadLetterState;
use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::context::{Ctx, Posted, SignedIn, see_other};
use super::i18n::market_time_of;
use super::widgets::*;
use crate::api::{QueryState, Refusal};

/// `GET /console/dead-letters[?state=waiting|redriven|all]`.
pub(crate) async fn dead_letters(
    SignedIn { ctx }: SignedIn,
    req: HttpRequest,
    state: web::Data<QueryState>,
) -> HttpResponse {
    let params: HashMap<String, String> = params(&req).into_iter().collect();
    let shown = params.get("state").map_or("waiting", String::as_str);
    let which = match shown {
        "redriven" => DeadLetterState::Redriven,
        "all" => DeadLetterState::All,
        _ => DeadLetterState::Waiting,
    };
    match crate::api::dead_letters::list_body(&state, which, 200, None).await {
        Ok(list) => {
            let body = render_list(&ctx, &params, shown, &list);
            ctx.page(StatusCode::OK, ctx.lang.tr("Dead letters", "死信"), body)
        }
        Err(refusal) => ctx.refusal(&refusal),
    }
}

/// The list page of `GET /v1/dead-letters`' body; `shown` is the state filter chosen.
fn render_list(ctx: &Ctx, params: &HashMap<String, String>, shown: &str, list: &Value) -> Markup {
    let l = ctx.lang;
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
    body
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
