//! A TLS listener for `axum::serve`: TCP connections are handshaken in their own tasks (a slow
//! or silent client holds up no one else), and only completed handshakes, whose client
//! certificate was verified, reach the HTTP server.
//!
//! Handshake slots are what an unauthenticated peer can take, so they are rationed: a
//! connection that sends nothing within [`FIRST_BYTE_TIMEOUT`] is closed, one peer address has
//! at most [`MAX_HANDSHAKES_PER_PEER`] handshakes in flight (more are closed at once), and
//! there are [`MAX_HANDSHAKES`] slots in all. Idle TCP connections from one address then
//! cannot keep real gateways out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::{san, server_config, Settings};

/// A client has this long to send its first byte (a TLS ClientHello is sent at once).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client has this long to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 1024;
/// Handshakes in flight at once from one IP address; more connections from it are closed.
/// A gateway opens a few connections at a time, each handshaken in milliseconds; 64 leaves
/// room for an Envoy opening many at once (one per concurrent call, over HTTP/1.1).
pub const MAX_HANDSHAKES_PER_PEER: usize = 64;

type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// The bound listener; dropping it stops accepting.
pub struct GatewayTlsListener {
    incoming: mpsc::Receiver<Accepted>,
    local: SocketAddr,
    acceptor: JoinHandle<()>,
    reloader: Reloader,
}

/// The rustls configuration new handshakes use, shared with the accept loop.
type Current = Arc<RwLock<Arc<ServerConfig>>>;

/// Reads the certificate, key and CA files again (on SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    settings: Settings,
    current: Current,
}

impl Reloader {
    /// New handshakes use the new files; open connections keep what they were made with. On
    /// an error the previous files stay in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = server_config(&self.settings)?;
        // A poisoned lock only means a panic elsewhere while holding it; the value is a
        // whole Arc either way.
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

fn current(config: &Current) -> Arc<ServerConfig> {
    match config.read() {
        Ok(c) => Arc::clone(&c),
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

impl GatewayTlsListener {
    /// Loads the certificates and binds `settings.listen` (port 0: any free port).
    pub async fn bind(settings: &Settings) -> anyhow::Result<GatewayTlsListener> {
        let config = server_config(settings)?;
        let listen = settings.listen;
        let tcp = TcpListener::bind(listen).await.with_context(|| {
            format!(
                "could not listen on {listen} for gateway TLS: is another process using it? \
                 Choose another address with CREDMGR_GATEWAY_TLS_LISTEN (--gateway-tls-listen)"
            )
        })?;
        let local = tcp.local_addr()?;
        let (tx, incoming) = mpsc::channel(64);
        let config: Current = Arc::new(RwLock::new(config));
        let acceptor = tokio::spawn(accept_loop(tcp, Arc::clone(&config), tx));
        Ok(GatewayTlsListener {
            incoming,
            local,
            acceptor,
            reloader: Reloader {
                settings: settings.clone(),
                current: config,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }
}

impl Drop for GatewayTlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// Handshakes in flight per peer address.
#[derive(Clone, Default)]
struct PerPeer(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One handshake slot of a peer, given back on drop.
struct PeerSlot {
    peers: PerPeer,
    ip: IpAddr,
}

impl PerPeer {
    fn take(&self, ip: IpAddr) -> Option<PeerSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_PEER {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Waits for the first byte, then the handshake, each within its time.
async fn handshake(
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<TlsStream<TcpStream>, &'static str> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return Err("closed before the handshake"),
        Err(_) => return Err("sent nothing within the first-byte timeout"),
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            // rustls's reasons name the failed check (unknown issuer, no certificate, the SAN
            // rule), never key material.
            tracing::info!(%peer, "gateway TLS handshake refused: {e}");
            Err("handshake refused")
        }
        Err(_) => {
            tracing::info!(%peer, "gateway TLS handshake timed out");
            Err("handshake timed out")
        }
    }
}

async fn accept_loop(tcp: TcpListener, config: Current, tx: mpsc::Sender<Accepted>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let peers = PerPeer::default();
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "gateway TLS listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let Some(peer_slot) = peers.take(peer.ip()) else {
            tracing::debug!(%peer, "gateway TLS: too many handshakes in flight from this \
                address; connection closed");
            drop(stream);
            continue;
        };
        let (tls, tx) = (TlsAcceptor::from(current(&config)), tx.clone());
        tokio::spawn(async move {
            let result = handshake(tls, stream, peer).await;
            drop((permit, peer_slot));
            match result {
                Ok(stream) => {
                    // Fails only when the server has stopped; the connection is then dropped.
                    let _ = tx.send((stream, peer)).await;
                }
                Err(why) => tracing::debug!(%peer, "gateway TLS connection closed: {why}"),
            }
        });
    }
}

impl axum::serve::Listener for GatewayTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(accepted) => accepted,
            None => {
                // Only if the accept loop ended, which it does only once this is dropped.
                tracing::error!("gateway TLS listener: the accept loop stopped");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What the TLS handshake proved about a connection (axum `ConnectInfo`).
#[derive(Clone, Debug)]
pub struct ClientCertificate {
    /// The gateway the verified client certificate names; `None` cannot come out of a
    /// completed handshake (the verifier applies the same rule).
    pub gateway: Option<String>,
    pub remote: SocketAddr,
}

impl Connected<IncomingStream<'_, GatewayTlsListener>> for ClientCertificate {
    fn connect_info(stream: IncomingStream<'_, GatewayTlsListener>) -> Self {
        let (_, connection) = stream.io().get_ref();
        let gateway = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| san::gateway_name(cert).ok());
        let remote = *stream.remote_addr();
        tracing::debug!(%remote, gateway = gateway.as_deref().unwrap_or("-"),
            "gateway connected over TLS");
        ClientCertificate { gateway, remote }
    }
}
