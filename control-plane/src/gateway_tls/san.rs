//! The rule that names a gateway from its client certificate.
//!
//! A gateway's name is the `NAME` of the certificate's one URI subjectAltName of the form
//! `spiffe://TRUST_DOMAIN/gateway/NAME` (a SPIFFE ID, so certificates issued by SPIRE or a
//! service mesh work as they are). `NAME` follows the rule of every credmgr identifier (ASCII
//! letters, digits, `-`, `_`, `.`), the same as the names of `--gateway-key NAME=KEY`, so one
//! gateway can move from a key to a certificate and keep its name and its access policies.
//!
//! Why not the first DNS name or the subject's CN: a DNS name says where a server is, and a CA
//! that signs gateways may sign servers too; any server certificate would then pass as a
//! gateway named after its host. A URI SAN under `/gateway/` is issued on purpose, for a
//! gateway. Other SANs (DNS names, IP addresses, other URIs) are ignored, so a certificate
//! may carry them too. None, or more than one, gateway SPIFFE ID: the certificate is refused
//! rather than guessed at.

use std::fmt;

use credmgr_common::ids::validate_id;
use x509_parser::extensions::GeneralName;

/// Why a certificate names no gateway; the message says what the certificate must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct SanError(pub String);

/// The bare message: rustls shows a verifier's own error with `Debug` in its handshake errors,
/// which end up in the log.
impl fmt::Debug for SanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SanError {}

const RULE: &str = "a gateway's client certificate needs exactly one URI subjectAltName \
                    spiffe://<trust domain>/gateway/<gateway name>";

/// The gateway named by a DER certificate.
pub fn gateway_name(cert_der: &[u8]) -> Result<String, SanError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| SanError(format!("the client certificate cannot be parsed: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SanError(format!("the subjectAltName extension is malformed: {e}")))?;
    let uris = san.iter().flat_map(|s| {
        s.value.general_names.iter().filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
    });
    gateway_name_from_uris(uris)
}

/// The rule itself, over the certificate's URI SANs.
pub fn gateway_name_from_uris<'a>(
    uris: impl IntoIterator<Item = &'a str>,
) -> Result<String, SanError> {
    let mut found: Option<String> = None;
    for uri in uris {
        let Some(name) = gateway_of_spiffe_id(uri)? else {
            continue;
        };
        if let Some(first) = &found {
            return Err(SanError(format!(
                "the client certificate names two gateways, `{first}` and `{name}`: {RULE}"
            )));
        }
        found = Some(name.to_owned());
    }
    found.ok_or_else(|| SanError(format!("the client certificate names no gateway: {RULE}")))
}

/// `Ok(Some(name))` for `spiffe://TD/gateway/NAME`, `Ok(None)` for any other URI, an error
/// for a gateway SPIFFE ID whose trust domain or name is malformed (a typo at issuance is
/// better reported than ignored).
fn gateway_of_spiffe_id(uri: &str) -> Result<Option<&str>, SanError> {
    // SPIFFE IDs are lower-case `spiffe://` (SPIFFE-ID §2); anything else is another URI.
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return Ok(None);
    };
    let Some((trust_domain, path)) = rest.split_once('/') else {
        return Ok(None);
    };
    let Some(name) = path.strip_prefix("gateway/") else {
        return Ok(None);
    };
    // SPIFFE-ID §2.1: trust domains are lower-case letters, digits, `.`, `-` and `_`.
    if trust_domain.is_empty()
        || !trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_".contains(&b))
    {
        return Err(SanError(format!(
            "`{uri}` has a malformed trust domain (lower-case letters, digits, '.', '-', '_')"
        )));
    }
    validate_id(name)
        .map_err(|why| SanError(format!("the gateway name in `{uri}` {why}: {RULE}")))?;
    Ok(Some(name))
}

/// Does a server certificate carry a DNS name or an IP address, which gateways check the
/// control plane against? (RFC 6125: clients match SANs, not the subject's CN.)
pub fn names_a_server(cert_der: &[u8]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName(_) | GeneralName::IPAddress(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with(sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(s.try_into().unwrap())
    }

    #[test]
    fn the_gateway_spiffe_id_names_the_gateway_and_other_sans_are_ignored() {
        let cert = cert_with(vec![
            dns("edge-1.example.com"),
            uri("https://example.com/not-a-spiffe-id"),
            uri("spiffe://example.org/workload/web"),
            uri("spiffe://prod.example.org/gateway/edge-1"),
        ]);
        assert_eq!(gateway_name(&cert), Ok("edge-1".to_owned()));
    }

    #[test]
    fn a_certificate_with_only_a_dns_name_names_no_gateway() {
        let err = gateway_name(&cert_with(vec![dns("edge-1")])).unwrap_err();
        assert!(err.0.contains("spiffe://<trust domain>/gateway/"), "{err}");
        let err = gateway_name(&cert_with(vec![])).unwrap_err();
        assert!(err.0.contains("names no gateway"), "{err}");
    }

    #[test]
    fn two_gateway_ids_are_ambiguous_and_refused() {
        let err = gateway_name_from_uris([
            "spiffe://a.example/gateway/edge-1",
            "spiffe://a.example/gateway/edge-2",
        ])
        .unwrap_err();
        assert!(
            err.0.contains("edge-1") && err.0.contains("edge-2"),
            "{err}"
        );
    }

    #[test]
    fn malformed_gateway_ids_are_refused_with_the_reason() {
        for (bad, why) in [
            ("spiffe://a.example/gateway/", "must not be empty"),
            ("spiffe://a.example/gateway/edge/1", "contains '/'"),
            ("spiffe://a.example/gateway/edge%201", "contains '%'"),
            ("spiffe:///gateway/edge-1", "trust domain"),
            ("spiffe://A.Example/gateway/edge-1", "trust domain"),
        ] {
            let err = gateway_name_from_uris([bad]).unwrap_err();
            assert!(err.0.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn uris_that_are_not_gateway_ids_do_not_count() {
        for other in [
            "SPIFFE://a.example/gateway/edge-1",
            "spiffe://a.example",
            "spiffe://a.example/gateways/edge-1",
            "spiffe://a.example/ns/gateway/edge-1",
            "urn:gateway:edge-1",
        ] {
            assert!(gateway_name_from_uris([other]).is_err(), "{other}");
        }
        assert_eq!(
            gateway_name_from_uris(["urn:x", "spiffe://td/gateway/edge_2.a"]),
            Ok("edge_2.a".to_owned())
        );
    }

    #[test]
    fn server_certificates_need_a_dns_name_or_an_ip_address() {
        assert!(names_a_server(&cert_with(vec![dns("localhost")])));
        assert!(names_a_server(&cert_with(vec![SanType::IpAddress(
            std::net::Ipv4Addr::LOCALHOST.into()
        )])));
        assert!(!names_a_server(&cert_with(vec![uri(
            "spiffe://td/gateway/x"
        )])));
        assert!(!names_a_server(&cert_with(vec![])));
        assert!(!names_a_server(b"not a certificate"));
    }
}
