//! The `credmgr` binary as a process: start-up line, health, start-up errors, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_credmgr");

/// Kills the process if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gen_key(id: &str) -> String {
    let out = Command::new(BIN)
        .args(["gen-key", "--id", id])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn serve(dir: &std::path::Path, keys: Option<&str>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("CREDMGR_LISTEN", "127.0.0.1:0")
        .env(
            "CREDMGR_DATABASE_URL",
            format!("sqlite://{}", dir.join("credmgr.db").display()),
        )
        .env("CREDMGR_ADMIN_TOKEN", "process-test-admin-token-0123")
        .env(
            "CREDMGR_GATEWAY_KEYS",
            "edge-1=process-test-gateway-key-0123",
        );
    if let Some(keys) = keys {
        cmd.env("CREDMGR_KEYS", keys);
    }
    cmd
}

#[test]
fn gen_key_prints_one_key_line() {
    let line = gen_key("k7");
    let (id, key) = line.split_once(':').unwrap();
    assert_eq!(id, "k7");
    assert_eq!(key.len(), 44, "base64 of 32 bytes");
}

#[test]
fn without_a_key_it_refuses_to_start_and_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = serve(dir.path(), None).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("credmgr gen-key") && stderr.contains("CREDMGR_KEYS"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn it_announces_its_address_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = serve(dir.path(), Some(&gen_key("k1")))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim_end()
        .strip_prefix("credmgr listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
    assert!(dir.path().join("credmgr.db").exists());

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
