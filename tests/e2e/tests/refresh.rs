//! Refresh of authorization-code tokens against the real `oidc-provider`: one refresh for
//! many concurrent requests, and proactive refresh in the background.

use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{http, unix_now, wait_for, Deployment};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn fifty_concurrent_runtime_requests_for_an_expired_token_cause_exactly_one_refresh() {
    // Proactive refresh off: the token must be found expired by the runtime requests.
    let d = Deployment::start_consent(3, &[("CREDMGR_REFRESH_INTERVAL", "0")]);
    d.consent("dave");
    // The token was issued before the consent returned; 3 s later it has expired.
    let expired_by = unix_now() + 4;
    wait_for("the token to expire", Duration::from_secs(20), || {
        (unix_now() > expired_by).then_some(())
    });
    let before = d.oauth.stats();
    assert_eq!(before["token_requests"]["refresh_token"], 0, "{before}");

    let cp = Arc::new((
        d.control_plane.url.clone(),
        d.control_plane.gateway_key.clone(),
    ));
    let barrier = Arc::new(Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (cp, barrier) = (cp.clone(), barrier.clone());
            std::thread::spawn(move || {
                let path = credmgr_common::runtime::token_path(PROVIDER, CONNECTION);
                let client = http();
                barrier.wait();
                let r = client
                    .get(format!("{}{path}", cp.0))
                    .bearer_auth(&cp.1)
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().unwrap();
                (
                    status,
                    body["access_token"].as_str().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    if !answers.iter().all(|(s, _)| *s == 200) {
        let log = d.control_plane.process.log_text();
        let interesting: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("no token") || l.contains("ERROR"))
            .take(20)
            .collect();
        panic!(
            "{answers:?}\nstats: {}\nlog:\n{}",
            d.oauth.stats(),
            interesting.join("\n")
        );
    }
    let tokens: std::collections::BTreeSet<&str> =
        answers.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(tokens.len(), 1, "all 50 share the one refreshed token");
    let stats = d.oauth.stats();
    assert_eq!(
        stats["token_requests"]["refresh_token"], 1,
        "exactly one refresh at the provider: {stats}"
    );
    assert_eq!(stats["token_errors"]["invalid_grant"], 0, "{stats}");
    // The log line the background-refresh test relies on not seeing.
    assert!(d
        .control_plane
        .process
        .log_text()
        .contains("token handed out"));

    // The refreshed token works through Envoy.
    let (status, seen) = d.call("/after-refresh");
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["sub"], "dave", "{seen}");
    d.assert_no_plaintext_secrets();
}

#[test]
fn tokens_are_refreshed_in_the_background_before_they_expire() {
    let d = Deployment::start_consent(6, &[]);
    d.consent("erin");
    let first = d.connection();
    // No runtime request at all: only the scheduler can refresh.
    let refreshed = wait_for("a proactive refresh", Duration::from_secs(30), || {
        let c = d.connection();
        (c["token_expires_at"] != first["token_expires_at"]).then_some(c)
    });
    assert_eq!(refreshed["status"], "connected", "{refreshed}");
    let stats = d.oauth.stats();
    assert!(
        stats["token_requests"]["refresh_token"].as_u64() >= Some(1),
        "{stats}"
    );
    let log = d.control_plane.process.log_text();
    assert!(
        !log.contains("token handed out"),
        "no runtime request was made"
    );
    d.assert_no_plaintext_secrets();
}
