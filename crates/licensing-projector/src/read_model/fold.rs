//! A license's state from its stored events: the one fold every reader of the store uses (the
//! view follower, the rebuild, the as-of reads, the entitlements).

use licensing_domain::{self as domain, License};
use licensing_messages::event_codec;
use licensing_store::RecordedEvent;

use crate::read_model::ReadModelError;

/// A license's state from its stored events.
pub fn replay(stream: &str, events: &[RecordedEvent]) -> Result<License, ReadModelError> {
    fold(License::default(), stream, events.iter())
}

/// `state` after `events` of `stream`.
pub(crate) fn fold<'a>(
    mut state: License,
    stream: &str,
    events: impl IntoIterator<Item = &'a RecordedEvent>,
) -> Result<License, ReadModelError> {
    for e in events {
        state = apply(state, stream, e)?;
    }
    Ok(state)
}

/// `state` after one stored event of `stream`.
pub(crate) fn apply(
    state: License,
    stream: &str,
    e: &RecordedEvent,
) -> Result<License, ReadModelError> {
    let event =
        event_codec::decode(&e.event_type, e.schema_version, &e.payload).map_err(|source| {
            ReadModelError::Undecodable {
                stream: stream.to_owned(),
                source,
            }
        })?;
    Ok(domain::evolve(state, &event))
}
