//! The plain listener under clients that send half their headers and stop: they are closed
//! after the header-read timeout, at most `max_connections` are held at once, and the API
//! answers again as soon as they are cut.

use std::time::{Duration, Instant};

use credmgr_control_plane::http_server::{self, Limits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_header_clients_are_cut_and_the_api_answers_again() {
    let h = Harness::new().await;
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        max_connections: 8,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http_server::serve(
        listener,
        credmgr_control_plane::app(h.state.clone()),
        limits,
        async {
            let _ = stopped.await;
        },
    ));

    // Three times the cap of clients that send half a request and then nothing.
    let mut slow = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: credmgr\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }

    // A real request gets through once the slow ones ahead of it are cut: 24 slow clients
    // through 8 slots take three header-read timeouts.
    let started = Instant::now();
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/v1/providers"))
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the management API answers while slow clients hold connections");
    assert_eq!(r.status(), 200);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");

    // Every slow client was closed by the server (EOF or reset), none answered.
    for (i, mut s) in slow.into_iter().enumerate() {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(_)) | Ok(Err(_))),
            "slow client {i} is still connected"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(
            !text.contains("\"status\":\"ok\""),
            "slow client {i}: {text}"
        );
    }

    // A connection that waits idle after its request is closed after the timeout too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: credmgr\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "an idle keep-alive connection stays open");
    assert!(String::from_utf8_lossy(&buf).contains("\"status\":\"ok\""));

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap();
}
