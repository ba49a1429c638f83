//! The access rules (D22) and notices (D23): what the seller's software may do with a license at
//! a given instant, computed from its state, and the warnings due before an expiry or the end of
//! a freeze.
//!
//! The mode is a function of the state and the clock ([`License::access_at`]); the mode last
//! recorded in the stream is [`License::access`]. After every command `decide` compares the two
//! at the command's instant and appends one `access_changed` when they differ, so a change caused
//! only by the clock passing `expireTime` is an event like any other. What the clock will change
//! next, and when, is [`License::next_due`]: the projector schedules a `pass_time` command for
//! that instant.

use crate::access::{Access, AccessMode, AccessReason, DAY_MS, NoticePolicy, Policy};
use crate::event::{AccessChanged, Event, ExpiringSoon, FreezeEndingSoon};
use crate::state::License;
use crate::values::Timestamp;

/// The threshold (in days) due at `now` for a deadline, if any: the smallest threshold already
/// reached and below every threshold already noticed for this deadline. Several thresholds
/// reached at once give one notice, the most urgent.
fn threshold_due(
    thresholds: &[u32],
    sent: Option<u32>,
    deadline: Timestamp,
    now: Timestamp,
) -> Option<u32> {
    let remaining = deadline.as_millis() - now.as_millis();
    if remaining <= 0 {
        return None;
    }
    thresholds
        .iter()
        .copied()
        .filter(|t| i64::from(*t) * DAY_MS >= remaining && sent.is_none_or(|s| *t < s))
        .min()
}

/// When the next threshold of a deadline falls due: the largest threshold below every one
/// already noticed, before the deadline.
fn next_threshold(thresholds: &[u32], sent: Option<u32>, deadline: Timestamp) -> Option<Timestamp> {
    thresholds
        .iter()
        .copied()
        .filter(|t| sent.is_none_or(|s| *t < s))
        .max()
        .map(|t| deadline.plus_millis(-i64::from(t) * DAY_MS))
}

impl License {
    /// The access mode last recorded in the stream, with its bounds.
    pub fn access(&self) -> Access {
        self.access_of(self.access_mode, self.data_kept_until)
    }

    fn access_of(&self, mode: AccessMode, data_kept_until: Option<Timestamp>) -> Access {
        Access {
            mode,
            until: match mode {
                AccessMode::Active => self.expire.as_ref().map(|e| e.instant),
                _ => None,
            },
            data_kept_until: match mode {
                AccessMode::Frozen | AccessMode::Released => data_kept_until,
                _ => None,
            },
        }
    }

    /// The access mode the state and the clock give at `now` (D22).
    pub fn access_at(&self, now: Timestamp, policy: &Policy) -> Access {
        if self.released_at.is_some() {
            return self.access_of(AccessMode::Released, None);
        }
        if let Some(since) = self.frozen_since {
            let kept = self
                .data_kept_until
                .filter(|_| {
                    self.access_mode == AccessMode::Frozen
                        || self.access_mode == AccessMode::Released
                })
                .unwrap_or_else(|| since.plus_millis(policy.freeze_period_ms));
            let mode = if now >= kept {
                AccessMode::Released
            } else {
                AccessMode::Frozen
            };
            return self.access_of(mode, Some(kept));
        }
        // Past `expireTime` a code is expired, activated or not: activating it cannot succeed.
        match &self.expire {
            Some(expire) if now >= expire.instant => self.access_of(AccessMode::Expired, None),
            _ if self.activation != crate::ActivationStatus::Activated => {
                self.access_of(AccessMode::Pending, None)
            }
            _ => self.access_of(AccessMode::Active, None),
        }
    }

    /// The instant the clock changes something next for this license, as recorded: the mode (at
    /// `expireTime` while active, at `data_kept_until` while frozen) or a notice (never for a
    /// sandbox license). `None` when nothing is waiting for the clock.
    pub fn next_due(&self, notices: &NoticePolicy) -> Option<Timestamp> {
        let access = self.access();
        let mut due: Vec<Timestamp> = Vec::new();
        match access.mode {
            AccessMode::Active => {
                if let Some(until) = access.until {
                    due.push(until);
                    if !self.sandbox {
                        due.extend(next_threshold(
                            &notices.expiry_days,
                            self.expiry_noticed(until),
                            until,
                        ));
                    }
                }
            }
            AccessMode::Frozen => {
                if let Some(kept) = access.data_kept_until {
                    due.push(kept);
                    if !self.sandbox {
                        due.extend(next_threshold(
                            &notices.freeze_days,
                            self.freeze_noticed(kept),
                            kept,
                        ));
                    }
                }
            }
            // A code never activated expires at `expireTime` all the same (D22); no notice.
            AccessMode::Pending => due.extend(self.expire.as_ref().map(|e| e.instant)),
            AccessMode::Expired | AccessMode::Released => {}
        }
        due.into_iter().min()
    }

    /// The smallest threshold already noticed for this expiry.
    fn expiry_noticed(&self, expire: Timestamp) -> Option<u32> {
        self.expiry_notices
            .iter()
            .filter(|(at, _)| *at == expire.as_millis())
            .map(|(_, days)| *days)
            .min()
    }

    /// The smallest threshold already noticed for this end of freeze.
    fn freeze_noticed(&self, kept: Timestamp) -> Option<u32> {
        self.freeze_notices
            .iter()
            .filter(|(at, _)| *at == kept.as_millis())
            .map(|(_, days)| *days)
            .min()
    }

    /// The notices due at `now` by the recorded mode (D23): none for a sandbox license.
    pub(crate) fn notices_due(&self, notices: &NoticePolicy, now: Timestamp) -> Vec<Event> {
        if self.sandbox || self.code.is_none() {
            return Vec::new();
        }
        let access = self.access();
        let mut events = Vec::new();
        if let (AccessMode::Active, Some(expire)) = (access.mode, &self.expire) {
            let until = expire.instant;
            if let Some(days) =
                threshold_due(&notices.expiry_days, self.expiry_noticed(until), until, now)
            {
                events.push(Event::ExpiringSoon(ExpiringSoon {
                    expire: expire.clone(),
                    days,
                    at: now,
                }));
            }
        }
        if let (AccessMode::Frozen, Some(kept)) = (access.mode, access.data_kept_until) {
            if let Some(days) =
                threshold_due(&notices.freeze_days, self.freeze_noticed(kept), kept, now)
            {
                events.push(Event::FreezeEndingSoon(FreezeEndingSoon {
                    data_kept_until: kept,
                    days,
                    at: now,
                }));
            }
        }
        events
    }

    /// The `access_changed` due at `now` after `caused_by` (the events the command produced), if
    /// the mode the clock gives differs from the recorded one.
    pub(crate) fn access_change(
        &self,
        caused_by: &[Event],
        now: Timestamp,
        policy: &Policy,
    ) -> Option<Event> {
        self.code.as_ref()?;
        let next = self.access_at(now, policy);
        if next.mode == self.access_mode {
            return None;
        }
        let reason = caused_by
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Released(_) => Some(AccessReason::Released),
                Event::Frozen(_) => Some(AccessReason::Frozen),
                Event::Unfrozen(_) => Some(AccessReason::Unfrozen),
                Event::Activated(_) => Some(AccessReason::Activated),
                Event::Renewed(_) | Event::RenewalCancelled(_) => Some(AccessReason::ExpiryChanged),
                Event::HeartbeatAcknowledged(h) if h.expire.is_some() => {
                    Some(AccessReason::ExpiryChanged)
                }
                Event::DriftResolved(_) => Some(AccessReason::DriftResolved),
                _ => None,
            })
            .unwrap_or(match next.mode {
                AccessMode::Expired => AccessReason::ExpireTimePassed,
                AccessMode::Released if self.frozen_since.is_some() => {
                    AccessReason::DataKeptUntilPassed
                }
                _ => AccessReason::Recomputed,
            });
        Some(Event::AccessChanged(AccessChanged {
            from: self.access_mode,
            to: next.mode,
            reason,
            access_until: next.until,
            data_kept_until: next.data_kept_until,
            at: now,
        }))
    }
}
