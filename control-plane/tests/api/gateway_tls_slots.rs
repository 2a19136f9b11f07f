//! The gateways' TLS listener keeps its handshake slots for real gateways: idle TCP
//! connections (which never send a ClientHello) from one address are capped per address and
//! closed after the first-byte timeout, and a gateway with a good certificate connects while
//! they are open.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use credmgr_control_plane::gateway_tls::{self, ClientCertificate, GatewayTlsListener};
use credmgr_control_plane::http::gateway_app;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    identity: Vec<u8>,
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |sans: Vec<SanType>, usage| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server, server_key) = leaf(
        vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let gateway = SanType::URI("spiffe://t/gateway/edge-1".try_into().unwrap());
    let (client, client_key) = leaf(vec![gateway], ExtendedKeyUsagePurpose::ClientAuth);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server),
        ("server.key", server_key),
    ] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    Pki {
        dir,
        ca: ca.pem(),
        identity: format!("{client}{client_key}").into_bytes(),
    }
}

/// An idle TCP connection from `from` (another loopback address than the gateway's).
async fn idle_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_keep_a_gateway_out() {
    let h = Harness::new().await;
    let pki = pki();
    let settings = gateway_tls::Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert: pki.dir.path().join("server.pem"),
        key: pki.dir.path().join("server.key"),
        client_ca: pki.dir.path().join("ca.pem"),
    };
    let listener = GatewayTlsListener::bind(&settings).await.unwrap();
    let addr = listener.local_addr();
    let service =
        gateway_app(h.state.clone()).into_make_service_with_connect_info::<ClientCertificate>();
    let server = tokio::spawn(async move { axum::serve(listener, service).await });

    // More idle connections than the listener used to have handshake slots (256), all from
    // 127.0.0.2.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(idle_from(Ipv4Addr::new(127, 0, 0, 2), addr).await);
    }

    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(&pki.identity).unwrap())
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let r = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .expect("a gateway connects while 300 idle connections are open");
    assert_eq!(r.status(), 200);

    // The idle connections are all closed by the listener: past the per-address cap at once,
    // the others after the first-byte timeout.
    let deadline = gateway_tls::FIRST_BYTE_TIMEOUT + Duration::from_secs(3);
    for (i, mut stream) in idle.into_iter().enumerate() {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(deadline, stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "idle connection {i} still open: {read:?}"
        );
    }
    server.abort();
}
