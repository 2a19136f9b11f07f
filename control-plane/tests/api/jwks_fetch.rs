//! Fetching trusted issuers' keys: a JWKS URI that never answers holds up no other issuer,
//! and a JWKS body over the limit is refused without being read whole.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use credmgr_common::runtime::{CALLER_TOKEN_HEADER, ISSUERS_PATH};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::harness::*;
use crate::identities::{es256_keys, sign};

const GOOD_ISS: &str = "https://good.example";

/// Serves `jwks` at `http://.../jwks`.
async fn jwks_server(jwks: Value) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/jwks")
}

/// Accepts connections and never answers; counts them.
async fn silent_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, accepted)
}

/// Waits (polling, bounded) until `condition` holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_jwks_uri_does_not_hold_up_other_issuers() {
    // The silent issuer's fetch lasts the whole provider timeout.
    let h = Arc::new(Harness::with_timeout(Duration::from_secs(10)).await);
    h.unreachable_connection("gh", "alice").await;
    h.store_fresh_token("gh", "alice", "stored-token").await;
    let (sk, jwks) = es256_keys();
    let good =
        json!({"issuer": GOOD_ISS, "audiences": ["api"], "jwks_uri": jwks_server(jwks).await});
    let r = h
        .admin(Method::PUT, "/v1/trusted-issuers/good", Some(good))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["keys"]["count"], 1, "{}", r.json);
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/gh/connections/alice/access-policies/alice",
            Some(json!({"identity": {"kind": "user", "issuer": GOOD_ISS, "object_id": "u-alice"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);

    // The slow issuer is created; its PUT waits for its keys, as the API promises, in the
    // background of this test.
    let (silent_url, accepted) = silent_server().await;
    let slow =
        json!({"issuer": "https://slow.example", "audiences": ["api"], "jwks_uri": silent_url});
    let put = {
        let h = h.clone();
        tokio::spawn(async move {
            h.admin(Method::PUT, "/v1/trusted-issuers/slow", Some(slow))
                .await
        })
    };
    until("the slow issuer's JWKS is being fetched", || {
        accepted.load(Ordering::SeqCst) > 0
    })
    .await;

    // Meanwhile the other issuer's gateways and callers are served at once.
    let path = credmgr_common::runtime::token_path("gh", "alice");
    let jwt = sign(
        &sk,
        json!({"iss": GOOD_ISS, "aud": "api", "oid": "u-alice"}),
    );
    let bearer = format!("Bearer {GATEWAY_KEY}");
    for _ in 0..3 {
        let r = tokio::time::timeout(
            Duration::from_secs(1),
            h.call(Method::GET, ISSUERS_PATH, Some(GATEWAY_KEY), None),
        )
        .await
        .expect("trusted issuers answered within 1 s");
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let issuers = r.json["issuers"].as_array().unwrap();
        let good = issuers.iter().find(|i| i["issuer"] == GOOD_ISS).unwrap();
        assert_eq!(good["jwks"]["keys"].as_array().unwrap().len(), 1);

        let r = tokio::time::timeout(
            Duration::from_secs(1),
            h.call_with_headers(
                Method::GET,
                &path,
                &[("authorization", &bearer), (CALLER_TOKEN_HEADER, &jwt)],
            ),
        )
        .await
        .expect("the JWT caller's token request answered within 1 s");
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.json["access_token"], "stored-token");
    }
    assert!(!put.is_finished(), "the slow fetch is still under way");
    put.abort();
}

/// Serves one JWKS answer of `total` bytes (`{"keys":[` and spaces) chunk by chunk, with a
/// `Content-Length` or chunked; returns its URL and how many bytes were written before the
/// client went away.
async fn huge_jwks_server(total: usize, content_length: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let framing = if content_length {
            format!("Content-Length: {total}")
        } else {
            "Transfer-Encoding: chunked".to_owned()
        };
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        // One 64 KiB piece, sent again and again: the body is never held whole.
        let mut piece = vec![b' '; 64 * 1024];
        piece[..9].copy_from_slice(b"{\"keys\":[");
        let mut sent = 0;
        while sent < total {
            let data = &piece[..piece.len().min(total - sent)];
            let ok = if content_length {
                stream.write_all(data).await.is_ok()
            } else {
                let frame = format!("{:x}\r\n", data.len());
                stream.write_all(frame.as_bytes()).await.is_ok()
                    && stream.write_all(data).await.is_ok()
                    && stream.write_all(b"\r\n").await.is_ok()
            };
            if !ok {
                break;
            }
            sent += data.len();
            count.store(sent, Ordering::SeqCst);
        }
        count.fetch_or(1 << 62, Ordering::SeqCst); // done
    });
    (url, written)
}

#[tokio::test]
async fn a_jwks_over_the_limit_is_refused_without_being_read_whole() {
    const TOTAL: usize = 50 * 1024 * 1024;
    let h = Harness::new().await;
    for (id, content_length) in [("chunked", false), ("sized", true)] {
        let (url, written) = huge_jwks_server(TOTAL, content_length).await;
        let body = json!({"issuer": format!("https://{id}.example"), "audiences": ["api"], "jwks_uri": url});
        let r = h
            .admin(
                Method::PUT,
                &format!("/v1/trusted-issuers/{id}"),
                Some(body),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.json);
        let error = r.json["keys"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("larger than 256 KiB"), "{id}: {}", r.json);
        assert_eq!(r.json["keys"]["count"], 0, "{}", r.json);
        // The server stops when the control plane hangs up: far from all 50 MB went out.
        until("the JWKS server stopped writing", || {
            written.load(Ordering::SeqCst) & (1 << 62) != 0
        })
        .await;
        let sent = written.load(Ordering::SeqCst) & !(1 << 62);
        assert!(sent < TOTAL / 4, "{id}: {sent} bytes were sent");
    }
}
