//! The overview page: readiness, lags, the queue and dead letters, callbacks and calls of the last
//! 24 hours, heartbeat debt and the probe countdown.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use licensing_store::Direction;
use maud::{Markup, html};
use time::OffsetDateTime;

use super::context::{Console, Ctx, SignedIn};
use super::i18n::{Lang, market_time};
use super::widgets::*;
use crate::api::QueryState;

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

/// `GET /console/`: readiness, lags, queue and dead letters, callbacks and calls of the last 24
/// hours, heartbeat debt and the probe countdown.
pub(crate) async fn overview(
    SignedIn { ctx }: SignedIn,
    state: web::Data<QueryState>,
    console: web::Data<Console>,
) -> HttpResponse {
    let data = read_overview(&state, &console).await;
    let title = ctx.lang.tr("Overview", "概览");
    ctx.page(StatusCode::OK, title, render_overview(&ctx, data))
}

/// What the overview shows, read before anything is rendered; each part that could not be read
/// is shown as unavailable.
struct Overview {
    projector: Result<(), crate::metrics::NotReady>,
    peers: Vec<(String, Result<(), super::context::PeerNotReady>)>,
    queue: Result<(u32, u32), licensing_bus::BusError>,
    lags: Result<Vec<(String, f64)>, licensing_store::StoreError>,
    waiting: Result<i64, licensing_store::StoreError>,
    leases: Result<Vec<(i32, String, bool)>, licensing_store::StoreError>,
    counts: Result<Vec<licensing_store::ExchangeCount>, licensing_store::StoreError>,
    /// The last 24 hours' callbacks per hour.
    hours: Vec<(OffsetDateTime, Bar)>,
    /// Callbacks and calls of the last 24 hours by outcome.
    callbacks: Vec<(String, i64)>,
    calls: Vec<(String, i64)>,
    debt: Option<i64>,
    probe: Option<crate::read_model::probe_log::ProbeStatus>,
    days_left: Option<u32>,
    /// How many command queues there are.
    shards: i32,
}

async fn read_overview(state: &QueryState, console: &Console) -> Overview {
    let projector =
        crate::metrics::ready(&console.health, &state.store, console.ready_max_lag).await;
    let mut peers = Vec::new();
    for (name, url) in &console.peers {
        let verdict = super::context::peer_ready(url).await;
        peers.push((name.clone(), verdict));
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
    Overview {
        projector,
        peers,
        queue,
        lags,
        waiting,
        leases,
        counts,
        hours,
        callbacks,
        calls,
        debt,
        probe,
        days_left,
        shards: i32::from(console.bus_config.shards),
    }
}

fn render_overview(ctx: &Ctx, data: Overview) -> Markup {
    let Overview {
        projector,
        peers,
        queue,
        lags,
        waiting,
        leases,
        counts,
        hours,
        callbacks,
        calls,
        debt,
        probe,
        days_left,
        shards,
    } = data;
    let l = ctx.lang;
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
                    dt { "projector" } dd { (ready_cell(l, &projector)) }
                    @for (name, verdict) in &peers {
                        dt { (name) } dd { (ready_cell(l, verdict)) }
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
                            @for shard in 0..shards {
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
        (bars(ctx, &hours))
        div.scroll { (totals_table(l, l.tr("Result code", "结果码"), &callbacks)) }
        h2 { (l.tr("Calls to the marketplace in the last 24 hours, by disposition", "最近 24 小时对云商店的调用（按处置）")) }
        div.scroll { (totals_table(l, l.tr("Disposition", "处置"), &calls)) }
    };
    body
}

/// A readiness verdict: ready, or not with the reason in words.
fn ready_cell<E: std::fmt::Display>(l: Lang, verdict: &Result<(), E>) -> Markup {
    html! {
        @match verdict {
            Ok(()) => span.ok { (l.tr("ready", "就绪")) },
            Err(reason) => span.bad { (l.tr("not ready", "未就绪")) ": " (reason) },
        }
    }
}
