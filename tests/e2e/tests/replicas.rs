//! Two control-plane replicas on one database: concurrent requests for an expired token, split
//! between them, cause exactly one refresh at the provider (refresh tokens rotate, and a reused
//! one would revoke the grant).

use credmgr_e2e::control_plane::ControlPlane;
use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{artifact, free_port, http, unix_now, wait_for, Deployment};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn two_replicas_sharing_a_database_refresh_an_expired_token_once() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys");
    let out = Command::new(artifact("CREDMGR_BIN", "target/debug/credmgr"))
        .args(["gen-key", "--id", "shared"])
        .output()
        .unwrap();
    std::fs::write(&key_file, &out.stdout).unwrap();
    let key_file = key_file.display().to_string();
    let env = [
        ("CREDMGR_KEY_FILE", key_file.as_str()),
        ("CREDMGR_REFRESH_INTERVAL", "0"),
    ];
    let d = Deployment::start_consent(3, &env);
    d.consent("grace");
    let expired_by = unix_now() + 4;

    // The second replica: same database (SQLite file or PostgreSQL), same key, its own port, log and tokens.
    let second_dir = d.dir.path().join("replica-2");
    std::fs::create_dir_all(&second_dir).unwrap();
    let mut env2 = env.to_vec();
    env2.push((
        "CREDMGR_DATABASE_URL",
        d.control_plane.database_url.as_str(),
    ));
    let second = ControlPlane::start_with(&second_dir, free_port(), &env2);

    wait_for("the token to expire", Duration::from_secs(20), || {
        (unix_now() > expired_by).then_some(())
    });
    let replicas = Arc::new([
        (
            d.control_plane.url.clone(),
            d.control_plane.gateway_key.clone(),
        ),
        (second.url.clone(), second.gateway_key.clone()),
    ]);
    let barrier = Arc::new(Barrier::new(40));
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let (replicas, barrier) = (replicas.clone(), barrier.clone());
            std::thread::spawn(move || {
                let (url, key) = &replicas[i % 2];
                let path = credmgr_common::runtime::token_path(PROVIDER, CONNECTION);
                let client = http();
                barrier.wait();
                let r = client
                    .get(format!("{url}{path}"))
                    .bearer_auth(key)
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().unwrap();
                let token = body["access_token"].as_str().map(str::to_owned);
                (status, token.unwrap_or_else(|| body.to_string()))
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        answers.iter().all(|(s, _)| *s == 200),
        "{answers:?}\n{}",
        d.oauth.stats()
    );
    let tokens: std::collections::BTreeSet<&str> =
        answers.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        tokens.len(),
        1,
        "both replicas hand out the one refreshed token"
    );
    let stats = d.oauth.stats();
    assert_eq!(stats["token_requests"]["refresh_token"], 1, "{stats}");
    assert_eq!(stats["token_errors"]["invalid_grant"], 0, "{stats}");
    assert_eq!(d.connection()["status"], "connected");
    d.assert_no_plaintext_secrets();
}
