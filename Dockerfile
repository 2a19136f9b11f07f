# syntax=docker/dockerfile:1
# The control plane and the filter for those who build with Docker (or Podman, Buildah):
#   docker build --target control-plane -t credmgr-control-plane .
#   docker build --target filter -t credmgr-filter .
# `make images` makes the same two images without a Docker daemon (scripts/oci-image); this
# file is checked for syntax by `make validate-deploy` but not built in CI (no daemon, no
# registry there).

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN rustup target add wasm32-wasip1
COPY . .
RUN cargo build --locked --release -p credmgr-control-plane \
 && cargo build --locked --target wasm32-wasip1 --profile wasm -p credmgr-filter \
 && cargo run --locked --quiet -p credmgr-wasm-trim -- \
      target/wasm32-wasip1/wasm/credmgr_filter.wasm \
      --drop proxy_on_log --drop proxy_on_done --drop proxy_on_request_body \
      --drop proxy_on_request_trailers --drop proxy_on_response_body \
      --drop proxy_on_response_trailers \
 && mkdir /empty

# The Wasm plugin image Istio's WasmPlugin and Envoy Gateway pull ("compat" variant: one
# layer holding plugin.wasm). With Buildah add `--annotation module.wasm.image/variant=compat`.
FROM scratch AS filter
COPY --from=build /src/target/wasm32-wasip1/wasm/credmgr_filter.wasm /plugin.wasm

# glibc, libgcc and CA certificates, a nonroot user (65532), no shell.
FROM gcr.io/distroless/cc-debian12:nonroot AS control-plane
COPY --from=build /src/target/release/credmgr /usr/local/bin/credmgr
# Where the default SQLite database goes (mount a volume there, or use PostgreSQL).
COPY --from=build --chown=65532:65532 /empty /data
USER 65532:65532
ENV CREDMGR_LISTEN=0.0.0.0:8080 \
    CREDMGR_DATABASE_URL=sqlite:///data/credmgr.db
EXPOSE 8080 8443
ENTRYPOINT ["/usr/local/bin/credmgr"]
CMD ["serve"]
