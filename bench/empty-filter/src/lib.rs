//! The empty Proxy-Wasm filter of the benchmarks (`make bench`): it creates an HTTP context per
//! request and lets every request continue. The difference between it and Envoy without a Wasm
//! filter is what any Rust Proxy-Wasm filter costs (V8 entry, context creation, the ABI calls
//! the SDK makes); the difference between it and credmgr is what credmgr's own work costs.
//!
//! Natively this crate is empty: the filter only exists compiled to `wasm32-wasip1`.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Empty))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// One request: every callback keeps the SDK's default, `Continue`.
    struct Empty;

    impl Context for Empty {}

    impl HttpContext for Empty {}
}
