//! The probe log (拨测, D21): the watchdog's runs of the saved debug cases, and the marketplace's own
//! probes seen. One stream, [`PROBE_STREAM`], beside the licenses'; like them, decided here and
//! written by the processor alone.
//!
//! The marketplace freezes trading after five market days in a row on which its probe failed. A
//! market day counts as failed when any run that day failed; the countdown is
//! [`FREEZE_AFTER_FAILED_DAYS`] minus the consecutive failed days ([`failed_streak`]).

use crate::values::{Day, Timestamp};

/// The stream of the probe log.
pub const PROBE_STREAM: &str = "probe";

/// Consecutive failed market days after which the marketplace freezes trading (spec §5).
pub const FREEZE_AFTER_FAILED_DAYS: u32 = 5;

const HALF_DAY_MS: i64 = 12 * 3_600_000;

/// How one saved debug case went in one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRun {
    /// When the run started (all cases of a run share it).
    pub run_at: Timestamp,
    /// The case's name.
    pub case: String,
    /// The HTTP status of the answer, when one came.
    pub http_status: Option<u16>,
    /// The answer's body, when one came (at most [`ANSWER_MAX_CHARS`] characters).
    pub answer: Option<String>,
    /// Time to the answer, when one came.
    pub latency_ms: Option<u64>,
    /// Why the marketplace would count it failed; `None` when it passed.
    pub error: Option<String>,
}

/// The longest answer body a [`CaseRun`] keeps; the exchange itself is in the evidence log.
pub const ANSWER_MAX_CHARS: usize = 2_000;

/// A probe of the marketplace's own seen arriving (a `testFlag = 1` callback answered `000000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketplaceProbeSeen {
    /// When it arrived.
    pub at: Timestamp,
    /// The license code it named.
    pub license: String,
    /// Its `activity`.
    pub activity: String,
}

/// What the probe log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// One case of a watchdog run answered as the marketplace expects.
    RunPassed(CaseRun),
    /// One case of a watchdog run did not.
    RunFailed(CaseRun),
    /// The marketplace's own probe arrived (at most once per half-day in the market zone).
    MarketplaceProbeSeen(MarketplaceProbeSeen),
}

impl ProbeEvent {
    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::RunPassed(_) => "probe_run_passed",
            Self::RunFailed(_) => "probe_run_failed",
            Self::MarketplaceProbeSeen(_) => "marketplace_probe_seen",
        }
    }
}

/// What the processor needs of the probe log to decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeLog {
    /// Events in the stream.
    pub version: u64,
    /// The start of the newest run recorded.
    pub last_run_at: Option<Timestamp>,
    /// The newest marketplace probe recorded.
    pub last_seen_at: Option<Timestamp>,
}

impl ProbeLog {
    /// The events of a run that started at `run_at`: one per case, in order. Nothing when a run
    /// that started as late or later is recorded already (a run is recorded once).
    pub fn record_run(&self, run_at: Timestamp, cases: Vec<CaseRun>) -> Vec<ProbeEvent> {
        if self.last_run_at.is_some_and(|last| last >= run_at) {
            return Vec::new();
        }
        cases
            .into_iter()
            .map(|mut case| {
                case.run_at = run_at;
                if let Some(answer) = &mut case.answer
                    && answer.chars().count() > ANSWER_MAX_CHARS
                {
                    *answer = answer.chars().take(ANSWER_MAX_CHARS).collect();
                }
                if case.error.is_some() {
                    ProbeEvent::RunFailed(case)
                } else {
                    ProbeEvent::RunPassed(case)
                }
            })
            .collect()
    }

    /// The event of a marketplace probe at `at`, unless one was recorded in the same half-day of
    /// the zone `offset_minutes` east of UTC (or later).
    pub fn see_marketplace(
        &self,
        seen: MarketplaceProbeSeen,
        offset_minutes: i32,
    ) -> Option<ProbeEvent> {
        let half = half_day(seen.at, offset_minutes);
        match self.last_seen_at {
            Some(last) if half_day(last, offset_minutes) >= half => None,
            _ => Some(ProbeEvent::MarketplaceProbeSeen(seen)),
        }
    }

    /// The log after `event`.
    pub fn evolve(mut self, event: &ProbeEvent) -> Self {
        self.version += 1;
        match event {
            ProbeEvent::RunPassed(run) | ProbeEvent::RunFailed(run) => {
                self.last_run_at = self.last_run_at.max(Some(run.run_at));
            }
            ProbeEvent::MarketplaceProbeSeen(seen) => {
                self.last_seen_at = self.last_seen_at.max(Some(seen.at));
            }
        }
        self
    }
}

/// The half-day containing `at` (morning or afternoon) in a zone `offset_minutes` east of UTC, as
/// a number: twice the day number, plus one after noon.
pub const fn half_day(at: Timestamp, offset_minutes: i32) -> i64 {
    let local = at
        .as_millis()
        .saturating_add(offset_minutes as i64 * 60_000);
    local.div_euclid(HALF_DAY_MS)
}

/// The consecutive failed market days: `days` are the days with runs, each with whether any run
/// failed, newest first. Counting starts at the newest day with runs and stops at a day whose
/// runs all passed, or at a calendar day without runs (the watchdog did not run: unknown).
pub fn failed_streak(days: impl IntoIterator<Item = (Day, bool)>) -> u32 {
    let mut streak = 0;
    let mut expected: Option<Day> = None;
    for (day, failed) in days {
        if !failed || expected.is_some_and(|e| e != day) {
            break;
        }
        streak += 1;
        expected = Some(Day::from_number(day.number() - 1));
    }
    streak
}

/// Days left before the marketplace would freeze trading, after `failed_days` failed in a row.
pub const fn days_until_freeze(failed_days: u32) -> u32 {
    FREEZE_AFTER_FAILED_DAYS.saturating_sub(failed_days)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: i32 = 480;
    // 2026-11-30 00:00 +08:00.
    const MIDNIGHT: i64 = 1_795_968_000_000;

    fn case(name: &str, error: Option<&str>) -> CaseRun {
        CaseRun {
            run_at: Timestamp::from_millis(0),
            case: name.to_owned(),
            http_status: Some(200),
            answer: Some("{}".to_owned()),
            latency_ms: Some(12),
            error: error.map(str::to_owned),
        }
    }

    fn seen(at: i64) -> MarketplaceProbeSeen {
        MarketplaceProbeSeen {
            at: Timestamp::from_millis(at),
            license: "LIC-1".to_owned(),
            activity: "refreshLicenseCode".to_owned(),
        }
    }

    #[test]
    fn a_run_is_one_event_per_case_passed_or_failed_and_recorded_once() {
        let log = ProbeLog::default();
        let at = Timestamp::from_millis(MIDNIGHT + 9 * 3_600_000);
        let events = log.record_run(at, vec![case("a", None), case("b", Some("HTTP 502"))]);
        assert_eq!(
            events
                .iter()
                .map(ProbeEvent::event_type)
                .collect::<Vec<_>>(),
            ["probe_run_passed", "probe_run_failed"]
        );
        assert!(matches!(&events[0], ProbeEvent::RunPassed(r) if r.run_at == at));
        let log = events.iter().fold(log, ProbeLog::evolve);
        assert_eq!(log.version, 2);
        assert!(log.record_run(at, vec![case("a", None)]).is_empty());
        assert_eq!(
            log.record_run(at.plus_millis(1), vec![case("a", None)])
                .len(),
            1
        );
    }

    #[test]
    fn long_answers_are_cut() {
        let mut long = case("a", None);
        long.answer = Some("x".repeat(ANSWER_MAX_CHARS + 10));
        let events = ProbeLog::default().record_run(Timestamp::from_millis(1), vec![long]);
        let ProbeEvent::RunPassed(run) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(run.answer.as_ref().unwrap().len(), ANSWER_MAX_CHARS);
    }

    #[test]
    fn the_marketplace_is_seen_at_most_once_per_half_day_of_the_market_zone() {
        let morning = MIDNIGHT + 9 * 3_600_000;
        let log = ProbeLog::default();
        let first = log.see_marketplace(seen(morning), CST).unwrap();
        let log = log.evolve(&first);
        assert_eq!(log.see_marketplace(seen(morning + 60_000), CST), None);
        assert_eq!(
            log.see_marketplace(seen(MIDNIGHT + 12 * 3_600_000 - 1), CST),
            None
        );
        assert!(
            log.see_marketplace(seen(MIDNIGHT + 12 * 3_600_000), CST)
                .is_some()
        );
        // Late delivery of an earlier probe does not count again.
        assert_eq!(log.see_marketplace(seen(morning - 3_600_000), CST), None);
    }

    #[test]
    fn half_days_follow_the_zone() {
        // 12:00 in the market zone is 04:00 UTC: afternoon there, morning in UTC.
        let noon_cst = Timestamp::from_millis(MIDNIGHT + 12 * 3_600_000);
        assert_eq!(half_day(noon_cst, CST) % 2, 1);
        assert_eq!(half_day(noon_cst, 0) % 2, 0);
    }

    #[test]
    fn the_streak_counts_consecutive_failed_days_from_the_newest() {
        let d = |n| Day::from_number(n);
        assert_eq!(failed_streak([]), 0);
        assert_eq!(failed_streak([(d(10), false), (d(9), true)]), 0);
        assert_eq!(
            failed_streak([(d(10), true), (d(9), true), (d(8), false)]),
            2
        );
        assert_eq!(failed_streak([(d(10), true), (d(8), true)]), 1);
        assert_eq!(failed_streak((0..7).map(|i| (d(20 - i), true))), 7);
        assert_eq!(days_until_freeze(2), 3);
        assert_eq!(days_until_freeze(7), 0);
    }
}
