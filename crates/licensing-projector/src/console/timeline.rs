//! The license timeline as an operator reads it: each event in one sentence, in English and
//! 简体中文, a drift as a table of field / ours / the marketplace's, and the raw event behind a
//! `<details>`.

use licensing_domain::{
    self as domain, AccessReason, CallFailure, DriftDetected, DriftSide, Event, IgnoreReason,
    LocalStatus, MarketTime, Origin, Timestamp,
};
use licensing_store::RecordedEvent;
use maud::{Markup, html};
use time::UtcOffset;

use super::i18n::{Lang, clock_time};
use crate::read_model::time::{date_of, ts};

/// Renders times and words for one page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Speaker {
    pub(crate) lang: Lang,
    pub(crate) zone: UtcOffset,
}

impl Speaker {
    fn tr(self, en: &'static str, zh: &'static str) -> &'static str {
        self.lang.tr(en, zh)
    }

    fn time(self, t: Timestamp) -> String {
        clock_time(ts(t), self.zone)
    }

    fn market(self, t: &MarketTime) -> String {
        self.time(t.instant)
    }

    fn day(self, day: domain::Day) -> String {
        date_of(day.number()).unwrap_or_else(|| day.number().to_string())
    }

    fn failure(self, f: &CallFailure) -> String {
        let next = if f.retryable {
            self.tr("will retry", "将重试")
        } else {
            self.tr("not retried", "不再重试")
        };
        format!("{} {}; {next}", f.code, f.message)
    }

    fn local(self, status: LocalStatus) -> String {
        self.lang.status(match status {
            LocalStatus::Active => "active",
            LocalStatus::Frozen => "frozen",
            LocalStatus::Released => "released",
        })
    }

    fn reason(self, reason: AccessReason) -> &'static str {
        match reason {
            AccessReason::Activated => {
                self.tr("the marketplace confirmed the activation", "云商店确认激活")
            }
            AccessReason::ExpiryChanged => self.tr("the expiry changed", "到期时间已变更"),
            AccessReason::ExpireTimePassed => self.tr("the expiry passed", "已过到期时间"),
            AccessReason::Frozen => self.tr("frozen by the marketplace", "被云商店冻结"),
            AccessReason::Unfrozen => self.tr("unfrozen by the marketplace", "被云商店解冻"),
            AccessReason::Released => self.tr("released by the marketplace", "被云商店释放"),
            AccessReason::DataKeptUntilPassed => {
                self.tr("the data retention ended", "数据保留期已结束")
            }
            AccessReason::DriftResolved => self.tr(
                "a drift was resolved for the marketplace",
                "差异按云商店处理",
            ),
            AccessReason::Recomputed => self.tr("recorded for the first time", "首次记录"),
        }
    }

    /// The rows of a drift: field, ours, the marketplace's.
    pub(crate) fn drift_rows(self, d: &DriftDetected) -> Vec<(&'static str, String, String)> {
        let none = || "—".to_owned();
        let mut rows = Vec::new();
        if let Some((ours, theirs)) = &d.status {
            rows.push((
                self.tr("status", "状态"),
                self.local(*ours),
                theirs.as_str().to_owned(),
            ));
        }
        if let Some((ours, theirs)) = &d.expire {
            rows.push((
                self.tr("expiry", "到期时间"),
                ours.as_ref().map_or_else(none, |t| self.market(t)),
                self.market(theirs),
            ));
        }
        if let Some((ours, theirs)) = &d.product_id {
            rows.push((
                self.tr("product", "产品"),
                ours.clone().unwrap_or_else(none),
                theirs.clone(),
            ));
        }
        if let Some((ours, theirs)) = &d.order_id {
            rows.push((
                self.tr("order", "订单"),
                ours.clone().unwrap_or_else(none),
                theirs.clone(),
            ));
        }
        rows
    }

    /// One line saying what the event means.
    pub(crate) fn sentence(self, event: &Event) -> String {
        let zh = self.lang == Lang::Zh;
        match event {
            Event::Registered(r) => match r.origin {
                Origin::Callback => self
                    .tr("First seen in a marketplace callback", "首次见于云商店回调")
                    .to_owned(),
                Origin::ActivationRequest => self
                    .tr(
                        "Registered when its activation was requested",
                        "请求激活时登记",
                    )
                    .to_owned(),
            },
            Event::ActivationRequested(r) => match r.real_effect_time {
                Some(t) if zh => format!("已请求激活，生效时间 {}", self.time(t)),
                Some(t) => format!("Activation requested, effective {}", self.time(t)),
                None => self.tr("Activation requested", "已请求激活").to_owned(),
            },
            Event::Activated(a) if a.already_activated => self
                .tr(
                    "The marketplace says it was activated before; a heartbeat will confirm it",
                    "云商店称此前已激活；将由心跳确认",
                )
                .to_owned(),
            Event::Activated(a) => match a.info.as_ref().and_then(|i| i.expire.as_ref()) {
                Some(expire) if zh => format!("云商店已激活，到期时间 {}", self.market(expire)),
                Some(expire) => format!(
                    "Activated by the marketplace, expiring {}",
                    self.market(expire)
                ),
                None => self
                    .tr("Activated by the marketplace", "云商店已激活")
                    .to_owned(),
            },
            Event::ActivationAwaitingClaim(a) if zh => {
                format!("等待买家领取授权码（{}：{}）", a.code, a.message)
            }
            Event::ActivationAwaitingClaim(a) => format!(
                "Waiting for the buyer to claim the code ({}: {})",
                a.code, a.message
            ),
            Event::ActivationFailed(f) if zh => format!("激活失败：{}", self.failure(&f.failure)),
            Event::ActivationFailed(f) => {
                format!("Activation failed: {}", self.failure(&f.failure))
            }
            Event::Renewed(r) if zh => format!("已续费至 {}", self.market(&r.expire)),
            Event::Renewed(r) => format!("Renewed to {}", self.market(&r.expire)),
            Event::RenewalCancelled(r) if zh => {
                format!("续费已退订，到期时间改为 {}", self.market(&r.expire))
            }
            Event::RenewalCancelled(r) => {
                format!("Renewal refunded: expires {}", self.market(&r.expire))
            }
            Event::Frozen(_) => self
                .tr("Frozen by the marketplace", "已被云商店冻结")
                .to_owned(),
            Event::Unfrozen(_) => self
                .tr("Unfrozen by the marketplace", "已被云商店解冻")
                .to_owned(),
            Event::Released(r) => match &r.order_id {
                Some(order) if zh => format!("已被云商店释放（退订订单 {order}）"),
                Some(order) => format!("Released by the marketplace (unsubscribe order {order})"),
                None => self
                    .tr("Released by the marketplace", "已被云商店释放")
                    .to_owned(),
            },
            Event::UsageRecorded(u) if zh => {
                format!("已报告 {} 的使用（{}）", self.day(u.day), u.account)
            }
            Event::UsageRecorded(u) => {
                format!("Use on {} reported ({})", self.day(u.day), u.account)
            }
            Event::HeartbeatAcknowledged(h) if zh => format!(
                "{} 的心跳已确认；云商店状态 {}",
                self.day(h.day),
                h.status.as_str()
            ),
            Event::HeartbeatAcknowledged(h) => format!(
                "Heartbeat acknowledged for {}; the marketplace says {}",
                self.day(h.day),
                h.status.as_str()
            ),
            Event::HeartbeatFailed(h) if zh => format!(
                "{} 的心跳失败：{}",
                self.day(h.day),
                self.failure(&h.failure)
            ),
            Event::HeartbeatFailed(h) => format!(
                "Heartbeat for {} failed: {}",
                self.day(h.day),
                self.failure(&h.failure)
            ),
            Event::CallbackIgnored(c) => match c.reason {
                IgnoreReason::AlreadyReleased => self
                    .tr(
                        "A callback was ignored: the license was released before",
                        "已忽略回调：授权码此前已释放",
                    )
                    .to_owned(),
            },
            Event::DriftDetected(d) => {
                let fields: Vec<String> = self
                    .drift_rows(d)
                    .into_iter()
                    .map(|(field, ours, theirs)| {
                        if zh {
                            format!("{field}：我方 {ours}，云商店 {theirs}")
                        } else {
                            format!("{field}: ours {ours}, marketplace's {theirs}")
                        }
                    })
                    .collect();
                if zh {
                    format!("差异 {}", fields.join("；"))
                } else {
                    format!("Drift on {}", fields.join("; "))
                }
            }
            Event::DriftResolved(r) => {
                let kept = match r.accepted {
                    DriftSide::Marketplace => self.tr("the marketplace's values", "云商店的值"),
                    DriftSide::Ours => self.tr("our values", "我方的值"),
                };
                if zh {
                    format!("{} 已处理差异，保留{kept}：“{}”", r.actor, r.note)
                } else {
                    format!(
                        "Drift resolved by {}, keeping {kept}: “{}”",
                        r.actor, r.note
                    )
                }
            }
            Event::AccessChanged(a) => {
                let (from, to) = (
                    self.lang.status(a.from.as_str()),
                    self.lang.status(a.to.as_str()),
                );
                let reason = self.reason(a.reason);
                let until = match (a.access_until, a.data_kept_until) {
                    (Some(t), _) if zh => format!("，可用至 {}", self.time(t)),
                    (Some(t), _) => format!(", until {}", self.time(t)),
                    (None, Some(t)) if zh => format!("，数据保留至 {}", self.time(t)),
                    (None, Some(t)) => format!(", data kept until {}", self.time(t)),
                    (None, None) => String::new(),
                };
                if zh {
                    format!("访问模式 {from} → {to}：{reason}{until}")
                } else {
                    format!("Access {from} → {to}: {reason}{until}")
                }
            }
            Event::ExpiringSoon(e) if zh => {
                format!("{} 天后到期（{}）", e.days, self.market(&e.expire))
            }
            Event::ExpiringSoon(e) => {
                format!("Expires in {} days ({})", e.days, self.market(&e.expire))
            }
            Event::FreezeEndingSoon(f) if zh => format!(
                "{} 天后买家数据保留期结束（{}）",
                f.days,
                self.time(f.data_kept_until)
            ),
            Event::FreezeEndingSoon(f) => format!(
                "The buyer's data is kept {} more days (until {})",
                f.days,
                self.time(f.data_kept_until)
            ),
        }
    }

    /// The timeline's cell for an event: its sentence, a drift's table, and the raw event.
    pub(crate) fn cell(self, recorded: &RecordedEvent) -> Markup {
        let decoded = licensing_messages::event_codec::decode(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        );
        html! {
            @match &decoded {
                Ok(event) => {
                    span.sentence { (self.sentence(event)) }
                    @if let Event::DriftDetected(d) = event {
                        table.drift {
                            thead { tr {
                                th { (self.tr("Field", "字段")) } th { (self.tr("Ours", "我方")) }
                                th { (self.tr("Marketplace's", "云商店")) }
                            } }
                            tbody {
                                @for (field, ours, theirs) in self.drift_rows(d) {
                                    tr { td { (field) } td { (ours) } td { (theirs) } }
                                }
                            }
                        }
                    }
                },
                Err(e) => span.bad { (self.tr("This build cannot read the event", "此版本无法读取该事件")) ": " (e) },
            }
            details.event {
                summary { (self.tr("Raw event", "原始事件")) }
                p { code.event-type { (recorded.event_type) } " v" (recorded.schema_version) }
                pre { (serde_json::to_string_pretty(&recorded.payload).unwrap_or_default()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{DriftDetected, MarketStatus, StatusChanged};

    fn at(raw: &str) -> MarketTime {
        let t = koogallery::market_time::parse_market_time(raw, time::macros::offset!(+8)).unwrap();
        MarketTime {
            instant: Timestamp::from_millis(koogallery::market_time::unix_millis(t)),
            raw: raw.to_owned(),
        }
    }

    fn speakers() -> [Speaker; 2] {
        let zone = time::macros::offset!(+8);
        [
            Speaker {
                lang: Lang::En,
                zone,
            },
            Speaker {
                lang: Lang::Zh,
                zone,
            },
        ]
    }

    #[test]
    fn a_drift_names_each_field_with_both_sides() {
        let drift = Event::DriftDetected(DriftDetected {
            status: Some((LocalStatus::Active, MarketStatus::Expired)),
            expire: Some((Some(at("20291231235959")), at("20301231235959"))),
            product_id: None,
            order_id: None,
            at: Timestamp::from_millis(0),
        });
        let [en, zh] = speakers();
        assert_eq!(
            en.sentence(&drift),
            "Drift on status: ours active, marketplace's EXPIRED; expiry: ours 2029-12-31 23:59:59, marketplace's 2030-12-31 23:59:59"
        );
        assert!(
            zh.sentence(&drift)
                .contains("到期时间：我方 2029-12-31 23:59:59，云商店 2030-12-31 23:59:59")
        );
    }

    #[test]
    fn a_freeze_reads_as_words_in_both_languages() {
        let frozen = Event::Frozen(StatusChanged {
            at: Timestamp::from_millis(0),
        });
        for speaker in speakers() {
            let line = speaker.sentence(&frozen);
            assert!(!line.contains('_') && !line.is_empty(), "{line}");
        }
        assert_eq!(speakers()[0].sentence(&frozen), "Frozen by the marketplace");
        assert_eq!(speakers()[1].sentence(&frozen), "已被云商店冻结");
    }
}
