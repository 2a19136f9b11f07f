//! What the control plane tells its operators besides logs: the gauges read from the store
//! when `/metrics` is scraped (`gauges`), the runtime API's latency and each request's span
//! (`request`), and the optional export of spans over OTLP (`otlp`).
//!
//! The counters and histograms themselves are in [`crate::metrics`]; this module sits above
//! the store and the state it reads them from.

pub mod gauges;
pub mod otlp;
pub mod request;
