//! The one door to the host. Every call the filter makes into Envoy goes through [`Host`]:
//! production implements it over `proxy_wasm::hostcalls` (which return `Result`, unlike the
//! SDK's `Context` defaults that unwrap), tests implement it with a small in-memory fake. The
//! logic above it therefore runs natively in `cargo test`.

/// A host call failed; the text names the call and the host's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSharedError {
    /// Someone wrote the key since we read it (compare-and-swap lost).
    CasMismatch,
    Host(HostError),
}

/// Log levels, as Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// The answer to an HTTP call out of the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    /// `None` when the call failed without a response (connect failure, timeout, reset).
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

/// Host calls used by the filter.
pub trait Host {
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    fn log(&self, level: Level, message: &str);

    /// A shared-data value and its CAS version (`None`, `None` when absent).
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes a shared-data value; with `cas`, only if the version is still that one.
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError>;

    /// Starts an HTTP call to an Envoy cluster; the answer arrives later under the returned token.
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u32, HostError>;

    /// A request property (Envoy attribute) by path, e.g. the route's metadata.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;

    /// The first value of a request header.
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError>;
    /// Replaces every value of a request header.
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Adds one more value to a request header.
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Removes a request header.
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;

    /// Makes `context_id` the context that later host calls act on (used to resume the other
    /// requests that waited for the same token).
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;
    /// Resumes the paused request of the effective context.
    fn resume_request(&self) -> Result<(), HostError>;

    /// The id of a counter (Envoy stat), defined on first use.
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    /// Adds `by` to a counter.
    fn increment(&self, counter: u32, by: i64) -> Result<(), HostError>;

    /// Answers the request locally instead of forwarding it.
    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
}
