//! `credmgr-wasm-trim`: removes the exports of Proxy-Wasm callbacks that a filter does not
//! implement, in place.
//!
//! The Rust SDK (`proxy-wasm`) exports every callback of the ABI, each with a default that does
//! nothing. Envoy's Proxy-Wasm host calls a callback only when the module exports it (for
//! example `ContextBase::onLog` returns at once when `proxy_on_log` is absent), and each call
//! is an entry into V8 that `make bench` measures on every request: `proxy_on_log` and
//! `proxy_on_done` run once per request, `proxy_on_response_body` once per body chunk. Without
//! their exports the host skips them and behaves as the SDK's defaults would (continue; done).
//!
//! Usage: `credmgr-wasm-trim MODULE.wasm... --drop proxy_on_log --drop proxy_on_done ...`.
//! Exports that are already absent are fine: running it twice changes nothing.

use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Remove the exports of Proxy-Wasm callbacks a filter does not implement")]
struct Cli {
    /// The modules to trim, rewritten in place.
    #[arg(required = true)]
    modules: Vec<PathBuf>,
    /// An exported callback to remove (repeat). Only `proxy_on_*` callbacks may be removed:
    /// the host treats each of them as optional.
    #[arg(long = "drop", required = true)]
    drop: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    for name in &cli.drop {
        if !name.starts_with("proxy_on_") {
            bail!("--drop {name}: only Proxy-Wasm callbacks (proxy_on_*) may be removed");
        }
    }
    for path in &cli.modules {
        let removed = trim_file(path, &cli.drop)?;
        println!(
            "{}: removed {} export(s){}",
            path.display(),
            removed.len(),
            if removed.is_empty() {
                String::new()
            } else {
                format!(": {}", removed.join(", "))
            }
        );
    }
    Ok(())
}

/// Trims the module at `path` in place (through a temporary file, so a failure leaves the
/// original as it was); returns the exports removed.
fn trim_file(path: &Path, drop: &[String]) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (trimmed, removed) = trim(&bytes, drop).with_context(|| format!("{}", path.display()))?;
    if removed.is_empty() {
        return Ok(removed);
    }
    let tmp = path.with_extension("wasm.trim");
    std::fs::write(&tmp, trimmed).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(removed)
}

/// What credmgr's filter keeps in its data to know whether it has a response callback
/// (`RESPONSE_CALLBACK` in filter/src/wasm.rs); its last byte becomes `0` here when the
/// callback's export is removed, so the filter can refuse a configuration that needs it.
const RESPONSE_CALLBACK_MARK: &[u8] = b"credmgr-response-callback=1";

/// Flips the response-callback mark in the module's data, wherever it is.
fn mark_no_response_callback(module: &mut walrus::Module) {
    let ids: Vec<walrus::DataId> = module.data.iter().map(|d| d.id()).collect();
    for id in ids {
        let data = module.data.get_mut(id);
        let at = data
            .value
            .windows(RESPONSE_CALLBACK_MARK.len())
            .position(|w| w == RESPONSE_CALLBACK_MARK);
        if let Some(last) =
            at.and_then(|i| data.value.get_mut(i + RESPONSE_CALLBACK_MARK.len() - 1))
        {
            *last = b'0';
        }
    }
}

/// The module without the function exports named in `drop`, and without the code that only
/// they reached; with the names of the exports removed.
fn trim(bytes: &[u8], drop: &[String]) -> Result<(Vec<u8>, Vec<String>)> {
    let mut module = walrus::Module::from_buffer(bytes).context("not a WebAssembly module")?;
    let doomed: Vec<(walrus::ExportId, String)> = module
        .exports
        .iter()
        .filter(|e| matches!(e.item, walrus::ExportItem::Function(_)))
        .filter(|e| drop.contains(&e.name))
        .map(|e| (e.id(), e.name.clone()))
        .collect();
    if doomed.is_empty() {
        return Ok((bytes.to_vec(), Vec::new()));
    }
    for (id, _) in &doomed {
        module.exports.delete(*id);
    }
    if doomed.iter().any(|(_, n)| n == "proxy_on_response_headers") {
        mark_no_response_callback(&mut module);
    }
    walrus::passes::gc::run(&mut module);
    Ok((
        module.emit_wasm(),
        doomed.into_iter().map(|(_, n)| n).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module exporting three functions that do nothing.
    fn module(exports: &[&str]) -> Vec<u8> {
        let mut m = walrus::Module::default();
        for name in exports {
            let mut f = walrus::FunctionBuilder::new(&mut m.types, &[], &[]);
            f.func_body();
            let id = f.finish(vec![], &mut m.funcs);
            m.exports.add(name, id);
        }
        m.emit_wasm()
    }

    fn exports(bytes: &[u8]) -> Vec<String> {
        let m = walrus::Module::from_buffer(bytes).unwrap();
        let mut names: Vec<String> = m.exports.iter().map(|e| e.name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn drops_the_named_exports_and_their_code_and_keeps_the_rest() {
        let input = module(&["proxy_on_log", "proxy_on_done", "proxy_on_request_headers"]);
        let drop = vec!["proxy_on_log".to_owned(), "proxy_on_done".to_owned()];
        let (out, removed) = trim(&input, &drop).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(exports(&out), vec!["proxy_on_request_headers"]);
        let m = walrus::Module::from_buffer(&out).unwrap();
        assert_eq!(
            m.funcs.iter().count(),
            1,
            "the dropped callbacks' code is gone"
        );

        // Again: nothing left to drop, the module is unchanged.
        let (again, removed) = trim(&out, &drop).unwrap();
        assert!(removed.is_empty());
        assert_eq!(again, out);
    }

    #[test]
    fn removing_the_response_callback_flips_the_filters_mark() {
        let mut m = walrus::Module::from_buffer(&module(&["proxy_on_response_headers"])).unwrap();
        let memory = m.memories.add_local(false, false, 1, None, None);
        let offset = walrus::ConstExpr::Value(walrus::ir::Value::I32(16));
        let value = [b"xx".as_slice(), RESPONSE_CALLBACK_MARK, b"yy"].concat();
        m.data
            .add(walrus::DataKind::Active { memory, offset }, value);
        let drop = vec!["proxy_on_response_headers".to_owned()];
        let (out, _) = trim(&m.emit_wasm(), &drop).unwrap();
        let m = walrus::Module::from_buffer(&out).unwrap();
        let data: Vec<u8> = m.data.iter().flat_map(|d| d.value.clone()).collect();
        assert!(data
            .windows(29)
            .any(|w| w == b"xxcredmgr-response-callback=0"));
    }

    #[test]
    fn a_file_that_is_not_wasm_is_refused_and_left_alone() {
        let dir = std::env::temp_dir().join(format!("wasm-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.wasm");
        std::fs::write(&path, b"not wasm").unwrap();
        let err = trim_file(&path, &["proxy_on_log".to_owned()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a WebAssembly module"),
            "{err:#}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"not wasm");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
