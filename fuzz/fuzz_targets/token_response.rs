//! A token endpoint's answer as the control plane reads it (`tokens::response::interpret`,
//! through `tokens::fuzz`): JSON or form-encoded, with each preset's quirks (GitHub's forms,
//! Slack's nested user token and lifted claims, providers' own invalid-grant codes).
//!
//! Input: byte 0 picks the HTTP status, byte 1 the preset (and whether the body was labelled
//! form-encoded); the rest is the body.
//!
//! Checks: no claim, at any depth, is named access_token, refresh_token or id_token (claims
//! are stored in plain text and served to every gateway); the access token is not empty;
//! lifetimes are not negative; the response's Debug output is the same whatever the tokens; a
//! failure's message (shown in the API and logs) holds no control characters.
#![no_main]

use credmgr_control_plane::presets::{self, Quirks};
use credmgr_control_plane::tokens::fuzz::{interpret, jwt_exp};
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use std::sync::LazyLock;

const STATUSES: [u16; 12] = [200, 201, 204, 301, 302, 400, 401, 403, 404, 429, 500, 503];

static QUIRKS: LazyLock<Vec<Quirks>> = LazyLock::new(|| {
    let mut all: Vec<Quirks> = presets::all().iter().map(|p| p.quirks.clone()).collect();
    all.insert(0, Quirks::default());
    all
});

fuzz_target!(|data: &[u8]| {
    let [status, pick, body @ ..] = data else {
        return;
    };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let quirks = &QUIRKS[usize::from(pick >> 1) % QUIRKS.len()];
    let form_label = pick & 1 == 1;
    let Some(answer) = interpret(status, form_label, body, quirks) else {
        return;
    };
    match answer {
        Ok(t) => {
            let token = t.access_token.expose_secret().to_owned();
            assert!(!token.is_empty());
            let claims = Value::Object(t.claims.clone());
            if let Some(name) = credmgr_fuzz::secret_field(&claims) {
                panic!("a claim is named {name}: {claims}");
            }
            assert!(t.expires_in.is_none_or(|s| s >= 0));
            assert!(t.refresh_token_expires_in.is_none_or(|s| s >= 0));
            // Debug output does not depend on the secrets: the same with others in their place.
            let shown = format!("{t:?}");
            let mut other = t;
            other.access_token = SecretString::from("other-access-token");
            other.refresh_token = other
                .refresh_token
                .map(|_| SecretString::from("other-refresh-token"));
            assert_eq!(shown, format!("{other:?}"), "Debug shows a token");
            let _ = jwt_exp(&token);
        }
        Err(failure) => {
            assert!(
                !failure.message.chars().any(char::is_control),
                "control characters in {:?}",
                failure.message
            );
        }
    }
});
