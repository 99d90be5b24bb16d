//! The secret box: credentials at rest, sealed with XChaCha20-Poly1305.
//!
//! A sealed value reads `v1:<key id>:<base64url(nonce ‖ ciphertext)>`. The nonce is 24
//! random bytes, so it never repeats in practice. The associated data names the row and
//! the purpose a value was sealed for, so a value copied to another row or purpose does
//! not open. The key id lets old values open while `liteskill secrets rotate` moves
//! them to a new key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngExt;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;

/// What a sealed value is bound to: the row that holds it and what it is for.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub row: &'a str,
    pub purpose: &'a str,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!("liteskill/{VERSION}/{}/{}", self.purpose, self.row).into_bytes()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SealError {
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("a sealed value uses key {0}, which is not configured")]
    UnknownKey(String),
    #[error("a sealed value does not open: it was altered, or sealed for another row or purpose")]
    Forged,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Key {
        let digest = Sha256::digest([b"liteskill key id:".as_slice(), bytes].concat());
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        Key { id, cipher: XChaCha20Poly1305::new(&(*bytes).into()) }
    }
}

/// Seals with the current key; opens with it or with a previous one.
pub struct SecretBox {
    current: Key,
    previous: Vec<Key>,
}

impl SecretBox {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> SecretBox {
        SecretBox { current: Key::new(current), previous: previous.iter().map(Key::new).collect() }
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, binding: Binding<'_>, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill(&mut nonce[..]);
        let aad = binding.associated_data();
        let payload = Payload { msg: plaintext.as_bytes(), aad: &aad };
        // Encryption fails only for messages beyond 256 GiB.
        let ciphertext = self.current.cipher.encrypt(&XNonce::from(nonce), payload).unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend(ciphertext);
        format!("{VERSION}:{}:{}", self.current.id, URL_SAFE_NO_PAD.encode(sealed))
    }

    pub fn open(&self, binding: Binding<'_>, sealed: &str) -> Result<SecretString, SealError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some(VERSION), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let aad = binding.associated_data();
        let plaintext = key
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: &aad })
            .map_err(|_| SealError::Forged)?;
        String::from_utf8(plaintext).map(SecretString::from).map_err(|_| SealError::Malformed)
    }

    /// Whether a sealed value is under the current key already.
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.split(':').nth(1) == Some(self.current.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const ROW: Binding<'static> = Binding { row: "0b5e", purpose: "mcp_api_key" };

    fn opened(secret_box: &SecretBox, binding: Binding<'_>, sealed: &str) -> Result<String, SealError> {
        secret_box.open(binding, sealed).map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn sealed_values_open_only_where_they_belong() {
        let secret_box = SecretBox::new(&[7; 32], &[]);
        let sealed = secret_box.seal(ROW, "sk-live-123");
        assert!(!sealed.contains("sk-live-123"));
        assert_ne!(sealed, secret_box.seal(ROW, "sk-live-123"), "a fresh nonce every time");
        assert_eq!(opened(&secret_box, ROW, &sealed), Ok("sk-live-123".to_owned()));
        let other_row = Binding { row: "f00d", ..ROW };
        assert_eq!(opened(&secret_box, other_row, &sealed), Err(SealError::Forged));
        let other_purpose = Binding { purpose: "oidc", ..ROW };
        assert_eq!(opened(&secret_box, other_purpose, &sealed), Err(SealError::Forged));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(opened(&secret_box, ROW, &tampered), Err(SealError::Forged));
        assert_eq!(opened(&secret_box, ROW, "v1:nope"), Err(SealError::Malformed));
    }

    #[test]
    fn previous_keys_open_old_values_until_they_are_rotated() {
        let old = SecretBox::new(&[1; 32], &[]);
        let sealed = old.seal(ROW, "hunter2");
        let rotated = SecretBox::new(&[2; 32], &[[1; 32]]);
        assert!(!rotated.is_current(&sealed));
        assert_eq!(opened(&rotated, ROW, &sealed), Ok("hunter2".to_owned()));
        let resealed = rotated.seal(ROW, "hunter2");
        assert!(rotated.is_current(&resealed));
        let new_only = SecretBox::new(&[2; 32], &[]);
        assert_eq!(opened(&new_only, ROW, &resealed), Ok("hunter2".to_owned()));
        assert!(matches!(new_only.open(ROW, &sealed), Err(SealError::UnknownKey(_))));
    }
}
