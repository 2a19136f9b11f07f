// Runs a wasm32-wasip1 program (the filter's unit tests, built by
// `cargo test --target wasm32-wasip1`, and its hot-path benchmark) under Node's WASI, so the
// filter's logic is also tested as 32-bit WebAssembly, the way Envoy runs it. Cargo calls this
// as the target's runner: `node scripts/wasi-run.mjs <file.wasm> [args...]`.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: { RUST_BACKTRACE: '0' },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(file));
const imports = wasi.getImportObject();
// The Proxy-Wasm host functions (module "env") exist only inside Envoy. Unit tests go through
// the filter's Host trait and never call them; should one be called, the test fails loudly.
for (const imp of WebAssembly.Module.imports(module)) {
  if (imp.module !== 'env' || imp.kind !== 'function') continue;
  imports.env ??= {};
  imports.env[imp.name] = () => {
    throw new Error(`host function env.${imp.name} called outside Envoy`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// A program linked with the filter library also exports the filter's `_initialize` (its
// Proxy-Wasm entry point, for Envoy); WASI refuses a command that has both, so it is given
// the command's own exports only.
const { memory, _start } = instance.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });
