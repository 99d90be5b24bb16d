//! Session tokens: 256 random bits handed to the client once; only their SHA-256 is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};

/// Name of the HttpOnly cookie that carries the token for the web page.
pub const COOKIE_NAME: &str = "liteskill_session";

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The token in an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// The value of cookie `name` in a `Cookie` header value.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// The session token in a `Cookie` header value.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    cookie(header, COOKIE_NAME)
}

/// `Set-Cookie` value for an HttpOnly, SameSite=Lax cookie under `path`.
pub fn cookie_header(name: &str, value: &str, path: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// `Set-Cookie` value that stores `token` for `max_age_secs`.
pub fn set_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    cookie_header(COOKIE_NAME, token, "/", max_age_secs, secure)
}

/// `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_hash_consistently() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn reads_bearer_and_cookie() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(from_cookie_header("a=1; liteskill_session=tok; b=2"), Some("tok"));
        assert_eq!(from_cookie_header("a=1"), None);
    }

    #[test]
    fn cookie_is_http_only() {
        let cookie = set_cookie("tok", 60, true);
        assert!(cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax"));
    }
}
