//! The probe filter of `make bench`'s hot-path profile. Envoy's binary is stripped and V8's
//! code is JIT-compiled, so a sampling profiler cannot say where credmgr's time goes; instead
//! the benchmark measures this filter with a growing set of the host calls credmgr's
//! `on_http_request_headers` makes on a cache hit (and its one response-header read), and
//! nothing else. Each step's cost is the difference to the previous one; what remains
//! between the last step and credmgr is credmgr's own Rust work (look-ups, allocations,
//! template rendering, request bookkeeping).
//!
//! Configuration: a string naming the operations, any of
//! - `route_metadata`: read the route's `filter_metadata.credmgr.policy` (get_property);
//! - `shared_get`: read a cached token of credmgr's size from shared data (get_shared_data);
//! - `clock`: read the current time (get_current_time);
//! - `set_header`: set `Authorization: Bearer <token>` (set_map_value);
//! - `response_status`: read the response's `:status` (get_map_value on response headers);
//! - `response_code`: read the response's status as Envoy's `response.code` attribute
//!   (get_property), the other way to learn it.

#[cfg(target_arch = "wasm32")]
mod wasm {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};
    use std::rc::Rc;

    /// A runtime token as credmgr caches it (same fields, same sizes as the OAuth server's).
    const TOKEN: &str = r#"{"access_token":"0123456789abcdefghijklmnopqrstuvwxyzABCDEFG","token_type":"Bearer","expires_at":4102444800,"refresh_at":4102441920,"claims":{"expires_in":3600,"scope":"api:read","token_type":"Bearer"}}"#;
    const KEY: &str = "credmgr-probe/token/bench/bench/managed";
    const AUTHORIZATION: &str = "Bearer 0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

    #[derive(Default)]
    struct Ops {
        route_metadata: bool,
        shared_get: bool,
        clock: bool,
        set_header: bool,
        response_status: bool,
        response_code: bool,
    }

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(Root { ops: Rc::new(Ops::default()) })
        });
    }}

    struct Root {
        ops: Rc<Ops>,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let has = |op: &str| config.split([',', ' ', '"', '[', ']']).any(|w| w == op);
            let ops = Ops {
                route_metadata: has("route_metadata"),
                shared_get: has("shared_get"),
                clock: has("clock"),
                set_header: has("set_header"),
                response_status: has("response_status"),
                response_code: has("response_code"),
            };
            if ops.shared_get
                && hostcalls::set_shared_data(KEY, Some(TOKEN.as_bytes()), None).is_err()
            {
                return false;
            }
            self.ops = Rc::new(ops);
            true
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Probe {
                ops: Rc::clone(&self.ops),
            }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Probe {
        ops: Rc<Ops>,
    }

    impl Context for Probe {}

    impl HttpContext for Probe {
        fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
            let ops = &self.ops;
            if ops.route_metadata {
                let _ = hostcalls::get_property(vec![
                    "xds",
                    "route_metadata",
                    "filter_metadata",
                    "credmgr",
                    "policy",
                ]);
            }
            if ops.shared_get {
                let _ = hostcalls::get_shared_data(KEY);
            }
            if ops.clock {
                let _ = hostcalls::get_current_time();
            }
            if ops.set_header {
                let _ = hostcalls::set_map_value(
                    MapType::HttpRequestHeaders,
                    "authorization",
                    Some(AUTHORIZATION),
                );
            }
            Action::Continue
        }

        fn on_http_response_headers(
            &mut self,
            _num_headers: usize,
            _end_of_stream: bool,
        ) -> Action {
            if self.ops.response_status {
                let _ = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status");
            }
            if self.ops.response_code {
                let _ = hostcalls::get_property(vec!["response", "code"]);
            }
            Action::Continue
        }
    }
}
