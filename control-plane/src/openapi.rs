//! The OpenAPI 3.1 document of the HTTP APIs, made from the code itself: each handler carries
//! a `#[utoipa::path]` attribute, each request and answer type derives `utoipa::ToSchema`,
//! and each handler module gathers its operations in a `pub struct Api` (`#[derive(OpenApi)]`).
//! [`document`] merges them with the security schemes and the shared error answers; `http.rs`
//! adds its own operations and serves the result at `GET /openapi.json`
//! ([`crate::http::openapi_document`]). It is committed as `control-plane/openapi.json`; the API
//! test `openapi` fails when the two differ, or when a route of [`crate::app`] is not in it.
//!
//! This module sits between the handlers, whose `Api` it gathers, and `http.rs`.

use credmgr_common::ErrorBody;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{InfoBuilder, OpenApi as Document};
use utoipa::{OpenApi, PartialSchema};

/// Security scheme of the management API: `Authorization: Bearer <admin token>`.
pub const ADMIN_TOKEN: &str = "admin_token";
/// Security scheme of the runtime API on the plain listener: `Authorization: Bearer <gateway key>`.
pub const GATEWAY_KEY: &str = "gateway_key";
/// Security scheme of the runtime API on the gateways' TLS listener: a client certificate.
pub const GATEWAY_CERTIFICATE: &str = "gateway_certificate";
/// The caller's JWT a gateway forwards (identity-type `jwt`), in `x-credmgr-caller-token`.
pub const CALLER_JWT: &str = "caller_jwt";

/// The groups of operations, in the order a reader meets them.
const TAGS: &[(&str, &str)] = &[
    ("provider types", "The catalogue of presets a provider is created from (admin token)."),
    ("providers", "Credential providers: an OAuth 2.0 server and the client registered at it (admin token)."),
    ("connections", "Connections: one set of tokens obtained through a provider, and their login links (admin token)."),
    ("access policies", "Who may use a connection: gateways, applications, users, groups (admin token)."),
    ("trusted issuers", "Issuers whose JWTs identify callers (identity-type `jwt`) (admin token)."),
    ("keys", "Key-encryption keys: usage and rotation (admin token)."),
    ("webhooks", "Endpoints that hear about connection events, signed, and their deliveries (admin token)."),
    ("audit", "The audit trail: tokens handed out or refused, and management changes (admin token)."),
    ("runtime", "What gateways call: tokens and trusted issuers (gateway key or client certificate)."),
    ("consent", "The pages a user's browser opens to consent (HTML; no credential but the link)."),
    ("operations", "Health, readiness, metrics and this document (no credential)."),
];

/// The whole document: `operational` (the operations of `http.rs`) and every handler module's.
pub fn document(operational: Document) -> Document {
    let mut doc = Document::default();
    doc.info = InfoBuilder::new()
        .title("credmgr")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "OAuth 2.0 credential manager for Envoy: the management API (`/v1`, admin token), \
             the runtime API that gateways call (`/runtime/v1`, gateway key or client \
             certificate), the consent pages a user's browser opens, and the operational \
             endpoints. Every error answers `{\"error\": {\"code\", \"message\"}}`; secrets \
             (client secrets, tokens, webhook signing secrets) are write-only and never appear in an answer, except \
             the access token the runtime API hands to an allowed gateway.",
        ))
        .license(Some(
            utoipa::openapi::LicenseBuilder::new()
                .name("Apache-2.0")
                .identifier(Some("Apache-2.0"))
                .build(),
        ))
        .build();
    for part in [
        operational,
        crate::providers::catalogue::Api::openapi(),
        crate::providers::Api::openapi(),
        crate::connections::Api::openapi(),
        crate::access_policies::Api::openapi(),
        crate::consent::Api::openapi(),
        crate::issuers::Api::openapi(),
        crate::keys::Api::openapi(),
        crate::webhooks::Api::openapi(),
        crate::audit::Api::openapi(),
        crate::runtime::Api::openapi(),
    ] {
        doc.merge(part);
    }
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("ErrorBody".into(), ErrorBody::schema());
    components
        .schemas
        .insert("ErrorDetail".into(), credmgr_common::ErrorDetail::schema());
    let schemes = [
        (
            ADMIN_TOKEN,
            bearer("The admin token (`CREDMGR_ADMIN_TOKEN`)."),
        ),
        (
            GATEWAY_KEY,
            bearer("A gateway key (`CREDMGR_GATEWAY_KEYS`, `NAME=KEY`): the KEY part."),
        ),
        (
            GATEWAY_CERTIFICATE,
            SecurityScheme::MutualTls {
                description: Some(
                    "On the gateways' TLS listener (`CREDMGR_GATEWAY_TLS_LISTEN`): a client \
                     certificate signed by `CREDMGR_GATEWAY_CLIENT_CA` whose URI SAN \
                     `spiffe://<trust domain>/gateway/<name>` names the gateway."
                        .into(),
                ),
                extensions: None,
            },
        ),
        (
            CALLER_JWT,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                credmgr_common::runtime::CALLER_TOKEN_HEADER,
                "The JWT of the caller a gateway asks for (identity-type `jwt`), from a \
                 trusted issuer; with a gateway credential, never alone. The control plane \
                 verifies it and checks the connection's access policies name its holder.",
            ))),
        ),
    ];
    for (name, scheme) in schemes {
        components.security_schemes.insert(name.into(), scheme);
    }
    doc
}

/// A document as served and committed: pretty JSON with a final newline.
pub fn to_json(document: &Document) -> String {
    let mut text = document
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}
