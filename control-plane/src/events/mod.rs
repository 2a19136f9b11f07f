//! Events that webhooks carry: what happened to a connection, or to the keys. This module
//! is on the ground floor with [`crate::domain`]: the store writes events in the same
//! transaction as the change that caused them, and the webhook worker sends them.
//!
//! An event's payload names the connection and what happened, never a token or a secret:
//! it is built only from ids, statuses and error codes and messages (which the management API
//! shows too).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::rfc3339;

/// The types of event a webhook can subscribe to, spelled as in the API and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
pub enum EventType {
    /// A connection obtained its first token (consent given, client credentials accepted),
    /// or one again after it needed consent.
    #[serde(rename = "connection.connected")]
    Connected,
    /// A refresh (or a client-credentials fetch) failed; `data.error.code` says why.
    #[serde(rename = "connection.refresh_failed")]
    RefreshFailed,
    /// A user must consent (again) before the connection has a token.
    #[serde(rename = "connection.consent_required")]
    ConsentRequired,
    /// A token was obtained again after failures, without a new consent.
    #[serde(rename = "connection.recovered")]
    Recovered,
    /// The connection was deleted.
    #[serde(rename = "connection.deleted")]
    Deleted,
    /// A key rotation's re-wrap of the stored secrets finished.
    #[serde(rename = "keys.rotation_finished")]
    KeyRotationFinished,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Connected,
        EventType::RefreshFailed,
        EventType::ConsentRequired,
        EventType::Recovered,
        EventType::Deleted,
        EventType::KeyRotationFinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Connected => "connection.connected",
            EventType::RefreshFailed => "connection.refresh_failed",
            EventType::ConsentRequired => "connection.consent_required",
            EventType::Recovered => "connection.recovered",
            EventType::Deleted => "connection.deleted",
            EventType::KeyRotationFinished => "keys.rotation_finished",
        }
    }
}

impl FromStr for EventType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, ready for the outbox: its id (the receivers' deduplication key, the
/// `webhook-id` header), its type and its payload.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: EventType,
    pub created_at: i64,
    /// The JSON body every receiver gets: `{"type", "timestamp", "data"}`.
    pub payload: String,
}

impl Event {
    fn new(kind: EventType, at: i64, data: Value) -> Event {
        let id = format!("evt_{}", random_hex(16));
        let payload = json!({
            "id": id,
            "type": kind.as_str(),
            "timestamp": rfc3339(at),
            "data": data,
        })
        .to_string();
        Event {
            id,
            kind,
            created_at: at,
            payload,
        }
    }

    /// An event about a connection. `status` is the connection's status after the change;
    /// `error` its failure's code and message, if any.
    pub fn connection(
        kind: EventType,
        at: i64,
        provider_id: &str,
        connection_id: &str,
        status: Option<&str>,
        error: Option<(&str, &str)>,
    ) -> Event {
        let mut data = json!({
            "provider_id": provider_id,
            "connection_id": connection_id,
        });
        if let Some(status) = status {
            data["status"] = json!(status);
        }
        if let Some((code, message)) = error {
            data["error"] = json!({"code": code, "message": message});
        }
        Event::new(kind, at, data)
    }

    /// A key rotation's re-wrap finished.
    pub fn key_rotation_finished(
        at: i64,
        active_key_id: &str,
        rewrapped: u64,
        failed: u64,
    ) -> Event {
        Event::new(
            EventType::KeyRotationFinished,
            at,
            json!({"active_key_id": active_key_id, "rewrapped": rewrapped, "failed": failed}),
        )
    }
}

/// `n` random bytes in hex.
fn random_hex(n: usize) -> String {
    use aes_gcm::aead::rand_core::RngCore as _;
    let mut bytes = vec![0u8; n];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_payloads_name_only_ids_and_codes() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        let e = Event::connection(
            EventType::RefreshFailed,
            0,
            "gh",
            "alice",
            Some("error"),
            Some((
                "refresh_token_invalid",
                "the provider refused the refresh token",
            )),
        );
        let v: Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(v["id"], json!(e.id));
        assert_eq!(v["type"], "connection.refresh_failed");
        assert_eq!(v["data"]["error"]["code"], "refresh_token_invalid");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
    }
}
