//! What an operator should do about a connection that is not connected, from its status and
//! the code of its last error: said once, shown by the CLI (`credmgr connection show`) and
//! the console alike. Imports nothing of the crate.

use credmgr_common::error::codes;

/// One sentence (or two) for a connection with `status` and last error `code` under a
/// provider with `grant` (`authorization_code` or `client_credentials`); `None` when nothing
/// needs doing.
pub fn advice(status: &str, code: Option<&str>, grant: &str) -> Option<&'static str> {
    let consent = grant == "authorization_code";
    let text = match code {
        Some(codes::CONSENT_REQUIRED)
        | Some(codes::REFRESH_TOKEN_INVALID)
        | Some(codes::REFRESH_TOKEN_EXPIRED) => {
            "A user must consent (again): make a login link and have the account's owner open it."
        }
        Some(codes::CLIENT_SECRET_REJECTED) => {
            "The provider refused the client id or secret: check them at the provider and \
             replace the provider's (or the connection's) client secret."
        }
        Some(codes::PROVIDER_UNREACHABLE) => {
            "The provider's token endpoint did not answer: check its URL, DNS, firewall and TLS \
             from the control plane's host. credmgr retries with backoff."
        }
        Some(codes::PROVIDER_ERROR) => {
            "The provider answered with an error: read the message, check the scopes and token \
             parameters, and the client's settings at the provider."
        }
        _ if status == "connected" => return None,
        _ if consent => {
            "Not connected yet: make a login link and have the account's owner open it."
        }
        _ => "No token yet: the next token request fetches one; if it fails, the error shows here.",
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_needs_nothing() {
        assert_eq!(advice("connected", None, "client_credentials"), None);
    }

    #[test]
    fn broken_connections_say_what_to_do() {
        let a = advice(
            "not_connected",
            Some("consent_required"),
            "authorization_code",
        );
        assert!(a.is_some_and(|a| a.contains("login link")));
        let a = advice(
            "error",
            Some("client_secret_rejected"),
            "client_credentials",
        );
        assert!(a.is_some_and(|a| a.contains("client secret")));
        let a = advice(
            "connected",
            Some("provider_unreachable"),
            "client_credentials",
        );
        assert!(a.is_some_and(|a| a.contains("did not answer")));
        assert!(advice("not_connected", None, "authorization_code").is_some());
    }
}
