//! Argon2id password hashes (the crate's defaults: 19 MiB, 2 passes), computed on the
//! blocking pool so they never stall the async workers.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::domain::values::Password;

/// Verified against when the account does not exist, so that a missing account takes as
/// long to refuse as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_now("dummy password for timing").unwrap_or_default());

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(anyhow::Error::msg)?.to_string())
}

pub async fn hash(password: &Password) -> anyhow::Result<String> {
    let password = password.expose().to_owned();
    tokio::task::spawn_blocking(move || hash_now(&password)).await?
}

/// Checks `candidate` against `stored`; with no stored hash it still does the work and fails.
pub async fn verify(candidate: &str, stored: Option<String>) -> bool {
    let candidate = candidate.to_owned();
    let exists = stored.is_some();
    let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
    let matches = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(candidate.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false);
    exists && matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let password = Password::parse("correct horse battery").expect("valid");
        let stored = hash(&password).await.expect("hashed");
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(stored.clone())).await);
        assert!(!verify("wrong horse battery", Some(stored)).await);
        assert!(!verify("dummy password for timing", None).await);
    }
}
