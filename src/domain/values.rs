//! Validated values. Each type can only be built through `parse`, so holding one proves
//! the input was checked.

use serde::{Deserialize, Serialize};

/// Input that breaks a rule, with the field it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Invalid { field, message: message.into() }
    }
}

/// Longest message a user may send, in characters.
pub const MAX_MESSAGE_CHARS: usize = 100_000;
const MAX_TITLE_CHARS: usize = 200;
const MAX_NAME_CHARS: usize = 100;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_SYSTEM_PROMPT_CHARS: usize = 20_000;
const MAX_MODEL_ID_CHARS: usize = 200;
const MIN_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 1024;

fn bounded(field: &'static str, raw: &str, max: usize) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(Invalid::new(field, format!("must be at most {max} characters")));
    }
    Ok(text.to_owned())
}

macro_rules! text_value {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, Invalid> {
                bounded($field, raw, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }
    };
}

text_value!(
    /// A conversation title.
    Title, "title", MAX_TITLE_CHARS
);
text_value!(
    /// A person's display name.
    DisplayName, "name", MAX_NAME_CHARS
);
text_value!(
    /// Instructions given to the model before the conversation.
    SystemPrompt, "systemPrompt", MAX_SYSTEM_PROMPT_CHARS
);
text_value!(
    /// The name of a group of users.
    GroupName, "name", MAX_NAME_CHARS
);
text_value!(
    /// The id of a model in the catalog.
    ModelId, "modelId", MAX_MODEL_ID_CHARS
);

/// The text of a message. Surrounding whitespace is kept except at the ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageContent(String);

impl MessageContent {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded("content", raw, MAX_MESSAGE_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, trimmed and lower-cased so that one address is one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = bounded("email", raw, MAX_EMAIL_CHARS)?.to_lowercase();
        let well_formed = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !email.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !well_formed {
            return Err(Invalid::new("email", "is not an email address"));
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a conversation's model samples: both optional, the model's defaults otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
}

impl Sampling {
    pub fn parse(temperature: Option<f64>, max_tokens: Option<i64>) -> Result<Self, Invalid> {
        if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(Invalid::new("temperature", "must be between 0 and 2"));
        }
        if max_tokens.is_some_and(|n| !(1..=1_000_000).contains(&n)) {
            return Err(Invalid::new("maxTokens", "must be between 1 and 1000000"));
        }
        Ok(Sampling { temperature, max_tokens })
    }
}

/// A regular expression a model id must match entirely for a user to use that model.
#[derive(Debug, Clone)]
pub struct ModelMask {
    source: String,
    /// `None` for a stored mask that no longer compiles: it allows nothing.
    regex: Option<regex::Regex>,
}

impl ModelMask {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let source = bounded("mask", raw, 500)?;
        let regex = regex::Regex::new(&format!("^(?:{source})$"))
            .map_err(|e| Invalid::new("mask", format!("is not a regular expression: {e}")))?;
        Ok(ModelMask { source, regex: Some(regex) })
    }

    /// A stored mask, read back; one that no longer compiles allows no model.
    pub fn stored(source: &str) -> Self {
        ModelMask::parse(source).unwrap_or_else(|_| ModelMask { source: source.to_owned(), regex: None })
    }

    pub fn allows(&self, model_id: &str) -> bool {
        self.regex.as_ref().is_some_and(|regex| regex.is_match(model_id))
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl PartialEq for ModelMask {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// A new password, checked for length only (long passphrases beat composition rules).
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(Invalid::new("password", format!("must be at least {MIN_PASSWORD_CHARS} characters")));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(Invalid::new("password", format!("must be at most {MAX_PASSWORD_CHARS} characters")));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.0), Ok("ada@example.com".to_owned()));
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in ["", "ada", "@example.com", "ada@", "a@b@c", "ada @x.org", "ada@.org"] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn message_content_must_be_present_and_bounded() {
        assert!(MessageContent::parse("   ").is_err());
        assert!(MessageContent::parse(&"x".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
        assert_eq!(MessageContent::parse(" hi ").map(|c| c.0), Ok("hi".to_owned()));
    }

    #[test]
    fn passwords_have_a_minimum_length_and_hide_in_debug() {
        assert!(Password::parse("short").is_err());
        let password = Password::parse("long enough secret").expect("valid");
        assert!(!format!("{password:?}").contains("secret"));
    }

    #[test]
    fn model_masks_match_whole_ids() {
        let mask = ModelMask::parse("claude-.*|gpt-4o").expect("mask");
        assert!(mask.allows("claude-sonnet") && mask.allows("gpt-4o"));
        assert!(!mask.allows("gpt-4o-mini") && !mask.allows("my-claude-x"));
        assert!(ModelMask::parse("(unclosed").is_err());
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse(" Plans ").map(Title::into_inner), Ok("Plans".to_owned()));
        assert!(Title::parse(&"t".repeat(201)).is_err());
    }
}
