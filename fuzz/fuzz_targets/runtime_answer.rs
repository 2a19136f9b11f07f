//! The control plane's answers as the filter reads them (`control_plane::parse_answer`,
//! `parse_issuers`): a token, an error body, Envoy's or a proxy's page, or the
//! trusted-issuers document, whose issuers are then read as the filter reads them.
//!
//! Input: byte 0 picks the status (or no answer); the rest is the body.
//!
//! Checks: a token answer never shows the token in its Debug output, nor in the failure an
//! unreadable answer becomes; a failure is 401 (a refused JWT), 403 or 503 and nothing else;
//! every published issuer reads as the filter reads it without a panic.
#![no_main]

use credmgr_common::jwt::TrustedIssuer;
use credmgr_filter::control_plane::{parse_answer, parse_issuers};
use credmgr_filter::host::CallResponse;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const STATUSES: [Option<u16>; 11] = [
    None,
    Some(200),
    Some(400),
    Some(401),
    Some(403),
    Some(404),
    Some(429),
    Some(500),
    Some(502),
    Some(503),
    Some(504),
];

fuzz_target!(|data: &[u8]| {
    let [status, body @ ..] = data else {
        return;
    };
    // The high bit: the call was made for a caller's JWT (identity-type jwt).
    let for_caller = status & 0x80 != 0;
    let response = CallResponse {
        status: STATUSES[usize::from(*status & 0x7f) % STATUSES.len()],
        body: body.to_vec(),
    };
    // The token as a 200 answer's body carries it, where it occurs once (a fuzzed body may
    // repeat it in a field an error message quotes). Other statuses' first line is quoted.
    let token = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("access_token")?.as_str().map(str::to_owned))
        .filter(|t| t.len() >= 8 && credmgr_fuzz::occurrences(body, t.as_bytes()) == 1);

    let answer = parse_answer(&response, for_caller);
    match &answer {
        Ok(t) => {
            // Debug output does not depend on the token: the same with another in its place.
            let mut other = t.clone();
            other.access_token = format!("other-{}", t.access_token);
            assert_eq!(
                format!("{t:?}"),
                format!("{other:?}"),
                "Debug shows the token"
            );
        }
        Err(f) => {
            assert!(
                matches!(f.status, 401 | 403 | 503) || (for_caller && f.status == 429),
                "status {}",
                f.status
            );
            // A login URL only ever reaches the caller it was made for, with its 401.
            let consent = for_caller
                && f.status == 401
                && f.body.error.code == "consent_required"
                && f.body.error.login_url.is_some();
            if f.status == 401 {
                assert!(
                    f.body.error.code.starts_with("jwt_") || consent,
                    "{:?}",
                    f.body.error.code
                );
            }
            if f.status == 503 {
                assert!(f.body.error.login_url.is_none(), "a login URL in a 503");
            }
            if let (Some(token), Some(200)) = (&token, response.status) {
                let shown = format!("{f:?}");
                assert!(
                    !shown.contains(token.as_str()),
                    "the failure shows the token: {shown}"
                );
            }
        }
    }

    if let Ok(issuers) = parse_issuers(&response) {
        for p in &issuers.issuers {
            let _ = TrustedIssuer::from_published(p);
        }
    }
});
