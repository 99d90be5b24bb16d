//! Relay connection arguments: bounded page sizes and opaque cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
    }
}
