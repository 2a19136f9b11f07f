//! The gateways' TLS listener: the runtime API (and `/healthz`) over TLS, where every
//! connection must present a client certificate signed by the configured gateway CA, and the
//! certificate names the gateway (rule in [`san`]).
//!
//! The name becomes the same [`auth::Gateway`] that a gateway key produces, so everything
//! above the authentication middleware is the same for both. On this listener the certificate
//! is the only credential: a gateway key in an `Authorization` header is ignored, never
//! accepted in place of a certificate (a connection without one never completes the
//! handshake). The management API is not served here; it stays on the plain listener.

mod listener;
pub mod san;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig};

pub use listener::{
    ClientCertificate, GatewayTlsListener, Reloader, FIRST_BYTE_TIMEOUT, HANDSHAKE_TIMEOUT,
    MAX_HANDSHAKES, MAX_HANDSHAKES_PER_PEER,
};

use crate::auth::credentials::Gateway;
use crate::error::ApiError;

/// `--gateway-tls-listen` and the files it needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// PEM: the control plane's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: the private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CA certificates that sign gateways' client certificates.
    pub client_ca: PathBuf,
}

/// Reads the certificate, key and CA, and builds the rustls configuration. Errors name the
/// file and say how to fix it; none contains key material.
pub fn server_config(settings: &Settings) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs(&settings.cert, "CREDMGR_TLS_CERT (--tls-cert)")?;
    if !chain.first().is_some_and(|c| san::names_a_server(c)) {
        bail!(
            "the first certificate in {} (CREDMGR_TLS_CERT) has no DNS or IP subjectAltName, \
             which gateways check the control plane against: issue it with one, e.g. \
             `-addext subjectAltName=DNS:credmgr.example.com`",
            settings.cert.display()
        );
    }
    let key = read_key(&settings.key)?;
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&settings.client_ca, "CREDMGR_GATEWAY_CLIENT_CA")? {
        roots.add(ca).with_context(|| {
            format!(
                "{} (CREDMGR_GATEWAY_CLIENT_CA) holds a certificate that cannot be a CA",
                settings.client_ca.display()
            )
        })?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("the gateway client CA cannot be used to verify client certificates")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls refuses its own default protocol versions")?
        .with_client_cert_verifier(Arc::new(GatewayVerifier { webpki }))
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key in {} (CREDMGR_TLS_KEY) does not fit the certificate in {} \
                 (CREDMGR_TLS_CERT), or is of a kind rustls does not support",
                settings.key.display(),
                settings.cert.display()
            )
        })?;
    // The server speaks HTTP/1.1 (axum without its `http2` feature); Envoy's clusters use it
    // by default. Announcing h2 would make curl and others choose it and fail.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("could not read {} named by {what}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{} (named by {what}) is not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "{} (named by {what}) holds no `-----BEGIN CERTIFICATE-----` block",
            path.display()
        );
    }
    Ok(certs)
}

/// The key file's contents are never echoed: a PEM parser's error can quote the line it
/// choked on, which here would be a piece of the private key.
fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = zeroize::Zeroizing::new(std::fs::read(path).with_context(|| {
        format!(
            "could not read the private key {} named by CREDMGR_TLS_KEY (--tls-key)",
            path.display()
        )
    })?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        anyhow::anyhow!(
            "{} (CREDMGR_TLS_KEY) holds no PEM private key: give the key of CREDMGR_TLS_CERT \
             as `-----BEGIN PRIVATE KEY-----` (PKCS#8), RSA or EC PEM, unencrypted",
            path.display()
        )
    })
}

/// WebPKI chain verification, then the SAN rule: a certificate that names no gateway is
/// refused during the handshake, like one from another CA.
#[derive(Debug)]
struct GatewayVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for GatewayVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        san::gateway_name(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Middleware of the TLS listener's runtime API: the gateway is the one its certificate
/// names. Any `Authorization` header is left alone and does not count.
pub async fn require_client_certificate(
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let name = request
        .extensions()
        .get::<ConnectInfo<ClientCertificate>>()
        .and_then(|ConnectInfo(c)| c.gateway.clone());
    match name {
        Some(name) => {
            request.extensions_mut().insert(Gateway { name });
            Ok(next.run(request).await)
        }
        // Unreachable through the listener (the handshake refuses such certificates); kept
        // so that a mis-wired router refuses rather than lets a request through.
        None => Err(ApiError::Unauthenticated(
            "no gateway client certificate on this connection",
        )),
    }
}

#[cfg(test)]
mod tests;
