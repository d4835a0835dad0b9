//! A secret's value, as the control plane stores it and a connector receives it.

/// Text (`SecretString`) or bytes (`SecretBinary`). It never prints: `{:?}` shows only its
/// kind, so a value cannot reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    String(String),
    Binary(Vec<u8>),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String(_) => f.write_str("String(<redacted>)"),
            Self::Binary(_) => f.write_str("Binary(<redacted>)"),
        }
    }
}

impl SecretValue {
    /// The value as text: a `SecretString`, or a `SecretBinary` that is UTF-8.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            Self::Binary(b) => std::str::from_utf8(b).ok(),
        }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::String(s) => s.as_bytes(),
            Self::Binary(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_prints() {
        let v = super::SecretValue::String("hunter2".into());
        assert!(!format!("{v:?}").contains("hunter2"));
    }
}
