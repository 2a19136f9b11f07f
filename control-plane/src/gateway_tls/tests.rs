//! Start-up checks of the certificate, key and CA files.

use super::*;
use rcgen::{CertificateParams, KeyPair, SanType};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn settings(&self, cert: &str, key: &str, ca: &str) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: self.dir.path().join(cert),
            key: self.dir.path().join(key),
            client_ca: self.dir.path().join(ca),
        }
    }
}

fn self_signed(sans: Vec<SanType>) -> (String, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap().pem(), key)
}

fn error_of(settings: &Settings) -> String {
    format!("{:#}", server_config(settings).unwrap_err())
}

#[test]
fn good_files_make_a_configuration() {
    let f = Files::new();
    let (cert, key) = self_signed(vec![SanType::DnsName("localhost".try_into().unwrap())]);
    f.write("cert.pem", &cert);
    f.write("key.pem", &key.serialize_pem());
    f.write("ca.pem", &self_signed(vec![]).0);
    let config = server_config(&f.settings("cert.pem", "key.pem", "ca.pem")).unwrap();
    assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
}

#[test]
fn missing_or_wrong_files_are_named_and_the_key_is_never_shown() {
    let f = Files::new();
    let (cert, key) = self_signed(vec![SanType::DnsName("localhost".try_into().unwrap())]);
    let key_pem = key.serialize_pem();
    f.write("cert.pem", &cert);
    f.write("key.pem", &key_pem);
    f.write("ca.pem", &self_signed(vec![]).0);

    let e = error_of(&f.settings("nope.pem", "key.pem", "ca.pem"));
    assert!(
        e.contains("nope.pem") && e.contains("CREDMGR_TLS_CERT"),
        "{e}"
    );
    let e = error_of(&f.settings("cert.pem", "nope.pem", "ca.pem"));
    assert!(
        e.contains("nope.pem") && e.contains("CREDMGR_TLS_KEY"),
        "{e}"
    );
    let e = error_of(&f.settings("cert.pem", "key.pem", "nope.pem"));
    assert!(e.contains("CREDMGR_GATEWAY_CLIENT_CA"), "{e}");

    // A key file given as the CA, and a certificate given as the key.
    let e = error_of(&f.settings("cert.pem", "key.pem", "key.pem"));
    assert!(e.contains("no `-----BEGIN CERTIFICATE-----`"), "{e}");
    let e = error_of(&f.settings("cert.pem", "cert.pem", "ca.pem"));
    assert!(e.contains("holds no PEM private key"), "{e}");

    // A key that is not the certificate's.
    let (_, other) = self_signed(vec![]);
    f.write("other-key.pem", &other.serialize_pem());
    let e = error_of(&f.settings("cert.pem", "other-key.pem", "ca.pem"));
    assert!(e.contains("does not fit the certificate"), "{e}");

    // A damaged key: the parser's complaint (which quotes the line) is not passed on.
    let damaged = key_pem.replacen('\n', "\n!!", 2);
    f.write("damaged.pem", &damaged);
    let e = error_of(&f.settings("cert.pem", "damaged.pem", "ca.pem"));
    let body_line = key_pem.lines().nth(1).unwrap();
    assert!(!e.contains(body_line) && !e.contains("!!"), "{e}");
}

#[test]
fn a_server_certificate_without_a_dns_or_ip_san_is_refused_with_the_fix() {
    let f = Files::new();
    let (cert, key) = self_signed(vec![]);
    f.write("cert.pem", &cert);
    f.write("key.pem", &key.serialize_pem());
    f.write("ca.pem", &cert);
    let e = error_of(&f.settings("cert.pem", "key.pem", "ca.pem"));
    assert!(e.contains("subjectAltName=DNS:"), "{e}");
}
