//! Relay connection arguments: bounded page sizes and opaque cursors.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::AppError;

/// Page size when the client does not say.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// The page size `first` asks for, refused outside `1..=max`.
pub fn page_size(first: Option<i32>, max: usize) -> Result<usize, AppError> {
    match first {
        None => Ok(DEFAULT_PAGE_SIZE.min(max)),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(AppError::bad_input("first", format!("must be between 1 and {max}, not {n}"))),
    }
}

/// Wraps a cursor's inner form so clients treat it as opaque.
pub fn encode_cursor(inner: &str) -> String {
    URL_SAFE_NO_PAD.encode(inner)
}

/// The inner form of a cursor this server issued.
pub fn decode_cursor(cursor: &str) -> Result<String, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| AppError::bad_input("after", "is not a cursor from this server"))
}

/// Position of an `after` cursor over a numbered list (0: from the start).
pub fn position_after(after: Option<&str>) -> Result<i64, AppError> {
    match after {
        None => Ok(0),
        Some(cursor) => decode_cursor(cursor)?
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| AppError::bad_input("after", "is not a cursor from this server")),
    }
}

/// The cursor of the item at `position` in a numbered list.
pub fn position_cursor(position: i64) -> String {
    encode_cursor(&position.to_string())
}

/// A keyset cursor for lists ordered by a time and then an id.
pub fn time_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    encode_cursor(&format!("{}|{id}", at.timestamp_micros()))
}

/// The time and id of a [`time_cursor`].
pub fn parse_time_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), AppError> {
    let invalid = || AppError::bad_input("after", "is not a cursor from this server");
    let inner = decode_cursor(cursor)?;
    let (micros, id) = inner.split_once('|').ok_or_else(invalid)?;
    let at = micros.parse().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(invalid)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| invalid())?))
}

/// A page from `rows` fetched with one row beyond `limit`, which tells whether more follow.
pub fn page<R, N: OutputType>(
    mut rows: Vec<R>,
    limit: usize,
    has_previous: bool,
    cursor: impl Fn(&R) -> String,
    node: impl Fn(R) -> N,
) -> Connection<String, N> {
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    let mut page = Connection::new(has_previous, has_next);
    page.edges.extend(rows.into_iter().map(|row| Edge::new(cursor(&row), node(row))));
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None, 100).ok(), Some(20));
        assert_eq!(page_size(Some(100), 100).ok(), Some(100));
        assert!(page_size(Some(0), 100).is_err());
        assert!(page_size(Some(-1), 100).is_err());
        assert!(page_size(Some(1_000_000), 100).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor("7")).ok().as_deref(), Some("7"));
        assert!(decode_cursor("!!!").is_err());
        assert_eq!(position_after(Some(&position_cursor(42))).ok(), Some(42));
        assert_eq!(position_after(None).ok(), Some(0));
        assert!(position_after(Some(&encode_cursor("-3"))).is_err());
        assert!(position_after(Some(&encode_cursor("x"))).is_err());
        let (at, id) = (chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time"), Uuid::new_v4());
        assert_eq!(parse_time_cursor(&time_cursor(at, id)).ok(), Some((at, id)));
        assert!(parse_time_cursor(&encode_cursor("12|not-an-id")).is_err());
    }
}
