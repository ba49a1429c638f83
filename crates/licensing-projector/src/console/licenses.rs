//! The licenses page: filters, search and paging over the query API's list.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use maud::html;

use super::context::{Ctx, SignedIn};
use super::i18n::market_time_of;
use super::widgets::*;
use crate::api::{QueryState, Refusal, licenses};

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
    let (pairs, page) = read_licenses(&req, &state).await;
    render_licenses(&ctx, &pairs, page)
}

/// The request's parameters (with the page size) and the page of the list they ask for.
async fn read_licenses(
    req: &HttpRequest,
    state: &QueryState,
) -> (Vec<(String, String)>, Result<serde_json::Value, Refusal>) {
    let mut pairs = params(req);
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
    (pairs, page)
}

fn render_licenses(
    ctx: &Ctx,
    pairs: &[(String, String)],
    page: Result<serde_json::Value, Refusal>,
) -> HttpResponse {
    let l = ctx.lang;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
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
