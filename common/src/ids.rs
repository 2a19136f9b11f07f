//! Resource identifiers (providers, connections, gateways).
//!
//! Identifiers appear in URL paths of both APIs and in Envoy shared-data keys, so they are
//! restricted to characters that need no escaping anywhere: ASCII letters, digits, `-`, `_`
//! and `.`, 1 to 64 of them, not starting with `.`.

/// Longest identifier accepted.
pub const MAX_ID_LEN: usize = 64;

/// Checks an identifier; the error says what is wrong with it.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("must be at most {MAX_ID_LEN} characters"));
    }
    if id.starts_with('.') {
        return Err("must not start with '.'".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "contains {c:?}; only ASCII letters, digits, '-', '_' and '.' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_names_what_is_wrong_otherwise() {
        assert!(validate_id("github-prod_1.a").is_ok());
        assert!(validate_id("").unwrap_err().contains("empty"));
        assert!(validate_id(".x").unwrap_err().contains("'.'"));
        assert!(validate_id("a/b").unwrap_err().contains("'/'"));
        assert!(validate_id(&"a".repeat(65)).unwrap_err().contains("64"));
    }
}
