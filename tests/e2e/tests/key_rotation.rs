//! Key rotation while requests flow through Envoy: a new key-encryption key is added and made
//! active through the key file and a reload; the control plane re-wraps every stored data key
//! in the background; no request fails; the old key is then unused and can be removed.

use credmgr_e2e::{artifact, http, wait_for, Deployment};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn gen_key(id: &str) -> String {
    let out = Command::new(artifact("CREDMGR_BIN", "target/debug/credmgr"))
        .args(["gen-key", "--id", id])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn usage(report: &Value, id: &str) -> Value {
    report["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn rotating_the_key_under_traffic_fails_no_request_and_leaves_nothing_under_the_old_key() {
    let keys_dir = tempfile::tempdir().unwrap();
    let key_file = keys_dir.path().join("keys");
    let (k1, k2) = (gen_key("k1"), gen_key("k2"));
    std::fs::write(&key_file, format!("{k1}\n")).unwrap();
    let key_file_env = key_file.display().to_string();
    // Tokens of 4 s: refreshes (new envelopes) happen throughout the rotation.
    let d = Deployment::start_consent(4, &[("CREDMGR_KEY_FILE", &key_file_env)]);
    d.consent("frank");
    let cp = &d.control_plane;
    let (status, report) = cp.admin("GET", "/v1/keys", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["active_key_id"], "k1", "{report}");
    assert!(
        usage(&report, "k1")["envelopes"].as_u64() >= Some(3),
        "{report}"
    );

    // Traffic through Envoy for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let envoy = d.envoy.url.clone();
    let traffic = {
        let (stop, failures) = (stop.clone(), failures.clone());
        std::thread::spawn(move || {
            let client = http();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 2_000 {
                match client.get(format!("{envoy}/rotation/{n}")).send() {
                    Ok(r) if r.status().as_u16() == 200 => {}
                    Ok(r) => failures.lock().unwrap().push(format!(
                        "{n}: {} {}",
                        r.status(),
                        r.text().unwrap_or_default()
                    )),
                    Err(e) => failures.lock().unwrap().push(format!("{n}: {e}")),
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };

    // Removing a key that still wraps secrets is refused.
    std::fs::write(&key_file, format!("{k2}\n")).unwrap();
    let (status, body) = cp.admin("POST", "/v1/keys/reload", None);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("`k1`"),
        "{body}"
    );

    // The rotation: both keys, the new one active.
    std::fs::write(&key_file, format!("{k1}\n{k2}\nactive=k2\n")).unwrap();
    let (status, report) = cp.admin("POST", "/v1/keys/reload", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["active_key_id"], "k2", "{report}");
    let report = wait_for(
        "every data key to be re-wrapped with k2",
        Duration::from_secs(30),
        || {
            let (_, report) = cp.admin("GET", "/v1/keys", None);
            (usage(&report, "k1")["envelopes"] == 0).then_some(report)
        },
    );
    assert_eq!(usage(&report, "k1")["removable"], true, "{report}");
    assert!(
        usage(&report, "k2")["envelopes"].as_u64() >= Some(3),
        "{report}"
    );

    // Keep the traffic going across a few refreshes under the new key, then drop the old key.
    let refreshes = d.oauth.stats()["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap();
    wait_for("two more refreshes", Duration::from_secs(30), || {
        let now = d.oauth.stats()["token_requests"]["refresh_token"].as_u64()?;
        (now >= refreshes + 2).then_some(())
    });
    std::fs::write(&key_file, format!("active=k2\n{k2}\n")).unwrap();
    let (status, report) = cp.admin("POST", "/v1/keys/reload", None);
    assert_eq!(status, 200, "{report}");
    assert!(usage(&report, "k1").is_null(), "k1 is gone: {report}");
    let refreshes = d.oauth.stats()["token_requests"]["refresh_token"]
        .as_u64()
        .unwrap();
    wait_for(
        "a refresh without the old key",
        Duration::from_secs(30),
        || {
            let now = d.oauth.stats()["token_requests"]["refresh_token"].as_u64()?;
            (now > refreshes).then_some(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(sent > 100, "only {sent} requests were sent");
    assert_eq!(d.connection()["status"], "connected");
    let stats = d.oauth.stats();
    assert_eq!(stats["token_errors"]["invalid_grant"], 0, "{stats}");
    d.assert_no_plaintext_secrets();
}
