//! The test's certificates, made with rcgen: a gateway CA that signs the control plane's
//! server certificate (localhost, 127.0.0.1) and the gateway's client certificate, another CA
//! that signs a certificate with the very same SAN, and a gateway-CA certificate that names
//! no gateway.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The gateway the good client certificate names.
pub const GATEWAY: &str = "edge-mtls";

/// PEM files in the test's directory.
pub struct Pki {
    /// The CA, which Envoy and the test's clients trust for the control plane's certificate.
    pub ca: PathBuf,
    /// The same CA in its own file: the control plane's CREDMGR_GATEWAY_CLIENT_CA, which a
    /// test may replace.
    pub client_ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub gateway_cert: PathBuf,
    pub gateway_key: PathBuf,
    /// `cert + key` PEM, as reqwest takes a client identity.
    pub gateway_identity: Vec<u8>,
    /// Same SAN as the gateway's, signed by another CA.
    pub foreign_identity: Vec<u8>,
    /// That other CA's certificate, PEM.
    pub foreign_ca: String,
    /// Signed by the gateway CA, but with a DNS name only: names no gateway.
    pub nameless_identity: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and its key, both PEM.
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn gateway_san(name: &str) -> SanType {
    SanType::URI(
        format!("spiffe://credmgr.test/gateway/{name}")
            .try_into()
            .unwrap(),
    )
}

impl Pki {
    pub fn make(dir: &Path) -> Pki {
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let gateway_ca = ca("credmgr test gateway CA");
        let (server_cert, server_key) = leaf(
            &gateway_ca,
            vec![
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let (gateway_cert, gateway_key) = leaf(&gateway_ca, vec![gateway_san(GATEWAY)], client);
        let foreign_ca = ca("another CA");
        let (foreign_cert, foreign_key) = leaf(
            &foreign_ca,
            vec![gateway_san(GATEWAY)],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (nameless_cert, nameless_key) = leaf(
            &gateway_ca,
            vec![SanType::DnsName(GATEWAY.try_into().unwrap())],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca: write("ca.pem", &gateway_ca.pem()),
            client_ca: write("gateway-client-ca.pem", &gateway_ca.pem()),
            server_cert: write("control-plane.pem", &server_cert),
            server_key: write("control-plane.key", &server_key),
            gateway_identity: format!("{gateway_cert}{gateway_key}").into_bytes(),
            gateway_cert: write("gateway.pem", &gateway_cert),
            gateway_key: write("gateway.key", &gateway_key),
            foreign_identity: format!("{foreign_cert}{foreign_key}").into_bytes(),
            foreign_ca: foreign_ca.pem(),
            nameless_identity: format!("{nameless_cert}{nameless_key}").into_bytes(),
        }
    }

    pub fn control_plane_env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            ("CREDMGR_GATEWAY_TLS_LISTEN", "127.0.0.1:0".to_owned()),
            ("CREDMGR_TLS_CERT", path(&self.server_cert)),
            ("CREDMGR_TLS_KEY", path(&self.server_key)),
            ("CREDMGR_GATEWAY_CLIENT_CA", path(&self.client_ca)),
        ]
    }

    /// A client that trusts only the gateway CA, with `identity` as its client certificate.
    pub fn client(&self, identity: Option<&[u8]>) -> reqwest::blocking::Client {
        let ca = std::fs::read(&self.ca).unwrap();
        let mut builder = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(15))
            .no_proxy();
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
        }
        builder.build().unwrap()
    }
}
