//! The filter's configuration (`FilterConfig::parse`): the JSON in Envoy's `configuration`
//! field, with its policies, templates and (once merged) request-matching rules.
//!
//! Checks, beyond "no panic": parsing is deterministic; a configuration that parses parses
//! the same once re-serialized (compact and pretty: whitespace and key order carry no
//! meaning); and a refusal never quotes the gateway key.
#![no_main]

use credmgr_filter::config::FilterConfig;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let first = FilterConfig::parse(data);
    let again = FilterConfig::parse(data);
    assert_eq!(
        format!("{first:?}"),
        format!("{again:?}"),
        "parse is not deterministic"
    );

    let value: Option<Value> = serde_json::from_slice(data).ok();
    let gateway_key = value
        .as_ref()
        .and_then(|v| v.pointer("/control_plane/gateway_key"))
        .and_then(Value::as_str)
        .filter(|k| k.len() >= 8)
        .map(str::to_owned);

    match &first {
        Ok(config) => {
            let Some(value) = value else {
                panic!("a configuration that is no JSON value was accepted");
            };
            for text in [
                serde_json::to_vec(&value),
                serde_json::to_vec_pretty(&value),
            ] {
                let Ok(text) = text else { continue };
                match FilterConfig::parse(&text) {
                    Ok(re) => assert_eq!(
                        format!("{config:?}"),
                        format!("{re:?}"),
                        "re-serialized, the configuration means something else"
                    ),
                    Err(e) => panic!("accepted, then refused once re-serialized: {e}"),
                }
            }
        }
        Err(e) => {
            if let Some(key) = gateway_key {
                // Only where the key occurs once: a fuzzed config may repeat it elsewhere.
                if credmgr_fuzz::occurrences(data, key.as_bytes()) == 1 {
                    assert!(
                        !e.0.contains(&key),
                        "the refusal quotes the gateway key: {e}"
                    );
                }
            }
        }
    }
});
