//! Logging, and the optional export of spans over OTLP (off unless an endpoint is configured).
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `info`), as before. With an endpoint
//! (`CREDMGR_OTLP_ENDPOINT`, else the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), the control plane's spans also go to an OpenTelemetry
//! collector over OTLP/HTTP with protobuf, in batches from a background thread: an HTTP request
//! (`request.rs`), the token fetch it makes, and the provider's token request. The export has
//! its own filter (the control plane's spans; its events at INFO and above, as span events),
//! independent of `RUST_LOG`. Without an endpoint no OpenTelemetry layer is installed at all:
//! tracing costs what it cost before.
//!
//! The exporter sends with the reqwest client the control plane already has (rustls, system
//! and Mozilla roots), on the tokio runtime: opentelemetry-otlp's own client would bring a
//! second version of reqwest.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// The path of traces under an OTLP/HTTP base URL (OTLP specification, "OTLP/HTTP").
const TRACES_PATH: &str = "/v1/traces";
/// How long one export may take (the OTLP exporters' default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest collector answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Whether spans are exported: only then is an incoming `traceparent` read.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported over OTLP.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans not yet exported.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (waits for the collector up to the export timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "traces: the last spans could not be exported");
            }
        }
    }
}

/// Where traces go: `credmgr_endpoint` (`CREDMGR_OTLP_ENDPOINT`, a base URL), else the
/// exporter reads the standard variables itself. `None`: no export.
fn traces_endpoint(credmgr_endpoint: Option<&str>) -> anyhow::Result<Option<Option<String>>> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(p) = std::env::var(name) {
            if !p.trim().is_empty() && p.trim() != "http/protobuf" {
                bail!(
                    "{name}={p}: credmgr exports traces over OTLP/HTTP with protobuf only \
                     (`http/protobuf`); point it at the collector's OTLP/HTTP port (4318 by \
                     default) and unset {name} or set it to http/protobuf"
                );
            }
        }
    }
    match credmgr_endpoint.map(str::trim).filter(|e| !e.is_empty()) {
        Some(base) => {
            let url = url::Url::parse(base).with_context(|| {
                format!(
                    "CREDMGR_OTLP_ENDPOINT (--otlp-endpoint) {base:?} is not a URL; give the \
                     collector's OTLP/HTTP base URL, e.g. http://otel-collector:4318"
                )
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!(
                    "CREDMGR_OTLP_ENDPOINT (--otlp-endpoint) must be an http or https URL (OTLP \
                     over HTTP), e.g. http://otel-collector:4318"
                );
            }
            Ok(Some(Some(format!(
                "{}{TRACES_PATH}",
                base.trim_end_matches('/')
            ))))
        }
        None if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT") => {
            Ok(Some(None))
        }
        None => Ok(None),
    }
}

/// Installs logging to stderr and, with an OTLP endpoint, the export of spans. Call inside the
/// tokio runtime (the exporter sends from it).
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter);
    let provider = match traces_endpoint(otlp_endpoint)? {
        None => None,
        Some(endpoint) => Some(tracer_provider(endpoint)?),
    };
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("credmgr"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.target().starts_with("credmgr")
                    && (meta.is_span() || *meta.level() <= Level::INFO)
            }))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .context("could not install the log subscriber")?;
    if provider.is_some() {
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!("traces are exported over OTLP/HTTP");
    }
    Ok(Telemetry { provider })
}

/// The tracer provider that batches spans to `endpoint` (`None`: the one the standard
/// variables name).
fn tracer_provider(endpoint: Option<String>) -> anyhow::Result<SdkTracerProvider> {
    let client = ReqwestOnTokio {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(EXPORT_TIMEOUT)
            .user_agent(concat!("credmgr/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("could not set up the HTTP client for OTLP")?,
        runtime: tokio::runtime::Handle::try_current()
            .context("traces are set up outside the tokio runtime")?,
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(client);
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter
        .build()
        .context("could not set up the OTLP exporter (check OTEL_EXPORTER_OTLP_* variables)")?;
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "credmgr".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The OTLP exporter's HTTP client: reqwest on the control plane's tokio runtime. The batch
/// processor exports from a thread of its own, outside the runtime, so each request is
/// spawned onto the runtime and awaited.
#[derive(Debug)]
struct ReqwestOnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for ReqwestOnTokio {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let (parts, body) = request.into_parts();
            let mut answer = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = answer.status();
            let headers = answer.headers().clone();
            let mut body = Vec::new();
            while let Some(chunk) = answer.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError::from("the collector's answer is too large"));
                }
                body.extend_from_slice(&chunk);
            }
            let mut response = Response::new(Bytes::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok::<_, HttpError>(response)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credmgr_endpoint_is_a_base_url() {
        assert_eq!(
            traces_endpoint(Some("http://collector:4318/")).unwrap(),
            Some(Some("http://collector:4318/v1/traces".into()))
        );
        assert!(traces_endpoint(Some("collector:4318")).is_err());
        assert!(traces_endpoint(Some("ftp://collector")).is_err());
    }
}
