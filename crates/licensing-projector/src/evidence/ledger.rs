//! One license's three-way ledger: what the marketplace said, what we concluded, what we told it,
//! in one time-ordered list.

use licensing_store::{Direction, RecordedEvent};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::evidence::{Evidence, activity, describe, text};
use crate::read_model::time::rfc3339;

/// Which column of the ledger an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    MarketplaceSaid,
    WeConcluded,
    WeTold,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Self::MarketplaceSaid => "marketplace_said",
            Self::WeConcluded => "we_concluded",
            Self::WeTold => "we_told",
        }
    }
}

/// One line of the ledger.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) at: OffsetDateTime,
    side: Side,
    pub(crate) kind: String,
    pub(crate) summary: String,
    pub(crate) exchange_id: Option<Uuid>,
    pub(crate) event_id: Option<Uuid>,
}

impl Entry {
    /// `marketplace_said`, `we_concluded` or `we_told`.
    pub(crate) fn side(&self) -> &'static str {
        self.side.as_str()
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "at": rfc3339(Some(self.at)),
            "side": self.side.as_str(),
            "kind": self.kind,
            "summary": self.summary,
            "exchange_id": self.exchange_id,
            "event_id": self.event_id,
        })
    }
}

/// The three columns merged in time order. A callback's answer is placed after the events it
/// caused (they commit together, just before the answer is sent).
pub(crate) fn ledger(evidence: &Evidence) -> Vec<Entry> {
    let mut entries = Vec::new();
    for event in &evidence.events {
        entries.push(Entry {
            at: event.recorded_at,
            side: Side::WeConcluded,
            kind: event.event_type.clone(),
            summary: event_summary(event),
            exchange_id: event.metadata.exchange_id,
            event_id: Some(event.event_id),
        });
    }
    for stored in &evidence.exchanges {
        let e = &stored.exchange;
        let answered = e.answered_at.unwrap_or(e.at);
        match e.direction {
            Direction::In => {
                let caused = evidence
                    .events
                    .iter()
                    .filter(|ev| ev.metadata.exchange_id == Some(e.id))
                    .map(|ev| ev.recorded_at)
                    .max();
                let activity = activity(&e.request);
                entries.push(Entry {
                    at: e.at,
                    side: Side::MarketplaceSaid,
                    kind: "callback".to_owned(),
                    summary: format!(
                        "{activity} (verification: {})",
                        text(&e.request_meta, "verification")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
                entries.push(Entry {
                    at: caused.map_or(answered, |c| c.max(answered)),
                    side: Side::WeTold,
                    kind: "callback_answer".to_owned(),
                    summary: format!(
                        "{} {}",
                        text(&e.response_meta, "result_code"),
                        text(&e.response_meta, "result_msg")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
            }
            Direction::Out => {
                let call = text(&e.request_meta, "call");
                entries.push(Entry {
                    at: e.at,
                    side: Side::WeTold,
                    kind: format!("{call}_request"),
                    summary: format!(
                        "POST {} ({} host)",
                        text(&e.request_meta, "url"),
                        text(&e.request_meta, "host")
                    ),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
                entries.push(Entry {
                    at: answered,
                    side: Side::MarketplaceSaid,
                    kind: format!("{call}_answer"),
                    summary: describe(stored),
                    exchange_id: Some(e.id),
                    event_id: None,
                });
            }
        }
    }
    entries.sort_by_key(|e| (e.at, e.side));
    entries
}

/// A short line for an event: its type and the payload fields that say the most.
pub(crate) fn event_summary(event: &RecordedEvent) -> String {
    let p = &event.payload;
    let fields: Vec<String> = [
        "scene",
        "expire",
        "expire_time",
        "status",
        "ours",
        "theirs",
        "day",
        "code",
        "message",
        "order_id",
    ]
    .iter()
    .filter_map(|k| {
        p.get(*k).filter(|v| !v.is_null()).map(|v| {
            format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )
        })
    })
    .collect();
    if fields.is_empty() {
        event.event_type.clone()
    } else {
        format!("{} {}", event.event_type, fields.join(" "))
    }
}
