//! The probe page: the watchdog's runs per case, the failed days, the marketplace's probes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use maud::{Markup, html};

use super::context::{Ctx, SignedIn};
use super::i18n::market_time_of;
use super::widgets::*;
use crate::api::QueryState;

/// `GET /console/probe`: the watchdog's runs per case, failed days, the marketplace's probes.
pub(crate) async fn probe(
    SignedIn { ctx }: SignedIn,
    state: web::Data<QueryState>,
) -> HttpResponse {
    match crate::api::probe::probe_body(&state, 20).await {
        Ok(probe) => {
            let body = render_probe(&ctx, &probe);
            ctx.page(StatusCode::OK, ctx.lang.tr("Probe", "拨测"), body)
        }
        Err(refusal) => ctx.refusal(&refusal),
    }
}

/// The page of `GET /v1/probe`'s body.
fn render_probe(ctx: &Ctx, probe: &serde_json::Value) -> Markup {
    let l = ctx.lang;
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
    body
}
