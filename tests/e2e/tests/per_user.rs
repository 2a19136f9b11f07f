//! Ids chosen per request, end to end (`envoy/e2e.yaml`, routes `/me/` and `/as/`): callers
//! with JWTs of a trusted issuer call the same route, whose `authorization-id` is
//! `u-{{identity.Claims.sub}}`; each reaches the backend with their own connection's token
//! (client-credentials connections at the real OAuth server, created through the management
//! API, each with one `user` access policy naming its user). A header that names another
//! user's connection is stopped by that connection's policy. And ten thousand users against
//! one Envoy: its memory stays under the bound `cache.max_entries` gives, and each user still
//! gets their own token.
//!
//! The trusted issuer is this test itself (`credmgr_e2e::issuer`).

use credmgr_e2e::fake_saas::FakeSaas;
use credmgr_e2e::issuer::{call_as as call_envoy, seen_token, sign, Issuer};
use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{http, Backend, ControlPlane, Deployment, Envoy, OAuthServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `cache.max_entries` in `envoy/e2e.yaml`.
const MAX_ENTRIES: u64 = 1024;

/// Everything running, the issuer trusted by the control plane.
fn setup() -> (Deployment, Issuer) {
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let cp = ControlPlane::start(dir.path());
    let backend = Backend::start(dir.path(), &oauth);
    cp.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    let issuer = Issuer::start();
    issuer.trusted_by(&cp);
    (
        Deployment::with_envoy(dir, oauth, cp, backend, "e2e.yaml"),
        issuer,
    )
}

/// What the backend saw of a request through `path` as `jwt` (with `extra` headers).
fn call(d: &Deployment, path: &str, jwt: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    call_envoy(&d.envoy, path, jwt, extra)
}

#[test]
fn each_user_reaches_the_backend_with_their_own_connection_and_no_one_elses() {
    let (d, issuer) = setup();
    let cp = &d.control_plane;
    for sub in ["alice", "bob"] {
        issuer.connect_user(cp, PROVIDER, sub);
    }
    let (alice, bob) = (issuer.jwt("alice"), issuer.jwt("bob"));

    let (status, a) = call(&d, "/me/x", &alice, &[]);
    assert_eq!(status, 200, "{a}");
    let (status, b) = call(&d, "/me/x", &bob, &[]);
    assert_eq!(status, 200, "{b}");
    let (ta, tb) = (seen_token(&a), seen_token(&b));
    assert_ne!(ta, tb, "each user has their own connection's token");
    assert!(ta != alice && tb != bob, "never the caller's JWT");
    assert_eq!(a["active"], true, "{a}");
    assert_eq!(b["active"], true, "{b}");
    // Again, now from the cache: the same tokens, each to its user.
    assert_eq!(seen_token(&call(&d, "/me/y", &alice, &[]).1), ta);
    assert_eq!(seen_token(&call(&d, "/me/y", &bob, &[]).1), tb);

    // The header route: each user naming their own connection is served...
    let (status, seen) = call(&d, "/as/x", &alice, &[("x-user", "alice")]);
    assert_eq!((status, seen_token(&seen)), (200, ta.clone()));
    // ...but bob naming alice's is refused by its access policy, from the cache and fresh.
    let (status, body) = call(&d, "/as/x", &bob, &[("x-user", "alice")]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    let carol = issuer.jwt("carol");
    issuer.connect_user(cp, PROVIDER, "carol-other");
    let (status, body) = call(&d, "/as/x", &carol, &[("x-user", "carol-other")]);
    assert_eq!(status, 403, "the control plane refuses too: {body}");

    // A user who has no connection: the control plane has none to give (not self-service).
    let (status, body) = call(&d, "/me/x", &issuer.jwt("dave"), &[]);
    assert_ne!(status, 200, "{body}");

    // A header that makes an invalid id: 400 naming the template.
    let (status, body) = call(&d, "/as/x", &alice, &[("x-user", "a/b")]);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("u-{{request.headers.x-user}}"),
        "{message}"
    );
    assert!(message.contains("policies.as[0]"), "{message}");

    // A forged JWT (signed by another key) claiming to be alice: refused before any id.
    let forger = Issuer::start();
    let forged = sign(&forger.key, &issuer.url, "alice", 60);
    let (status, body) = call(&d, "/me/x", &forged, &[]);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "jwt_bad_signature", "{body}");
}

/// Envoy's heap in use (tcmalloc's `allocated`, admin `/memory`), bytes.
fn envoy_allocated(envoy: &Envoy) -> u64 {
    let memory: Value = http()
        .get(format!("{}/memory", envoy.admin_url))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("Envoy /memory: {e}"));
    memory["allocated"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| memory["allocated"].as_u64())
        .unwrap_or_else(|| panic!("no allocated in {memory}"))
}

/// Envoy's resident memory (its V8 heaps and Wasm memories included), bytes.
fn envoy_rss(envoy: &Envoy) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", envoy.process.pid()))
        .unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs `f` over `items` on `threads` threads.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| panic!("a worker thread panicked"))
            })
            .collect()
    })
}

#[test]
fn ten_thousand_users_keep_envoys_memory_under_the_cache_bound() {
    let users: usize = std::env::var("CREDMGR_E2E_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let started = Instant::now();
    // A provider that answers at once with a token of its own to each connection (the OAuth
    // server keeps only its last thousand tokens active), and a backend that asks it.
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let saas = FakeSaas::start_minting();
    let cp = ControlPlane::start(dir.path());
    let backend = Backend::start_introspecting(dir.path(), &saas.introspection_url());
    cp.create_provider(
        PROVIDER,
        json!({"display_name": "SaaS", "identity_provider": "oauth2",
               "grant_type": "client_credentials", "client_id": "client-1",
               "client_secret": "client-secret-of-the-test-app",
               "token_url": saas.token_url(), "scopes": ["api:read"]}),
    );
    let issuer = Issuer::start();
    issuer.trusted_by(&cp);
    let envoy = Envoy::start(
        dir.path(),
        "e2e.yaml",
        &Deployment::envoy_vars(&cp, &backend),
    );
    let subs: Vec<String> = (0..users).map(|i| format!("user{i:05}")).collect();
    in_parallel(&subs, 12, |sub| issuer.connect_user(&cp, PROVIDER, sub));
    let created = started.elapsed();
    let jwts: Vec<String> = subs.iter().map(|s| issuer.jwt(s)).collect();
    let pairs: Vec<(&String, &String)> = subs.iter().zip(&jwts).collect();

    // Warm up with the first users, so the bound is measured from a running Envoy.
    let warm = (2 * MAX_ENTRIES as usize).min(users / 2);
    let first = |(sub, jwt): &(&String, &String)| -> (String, String) {
        let (status, seen) = call_envoy(&envoy, "/me/x", jwt, &[]);
        assert_eq!(status, 200, "{sub}: {seen}");
        ((*sub).clone(), seen_token(&seen))
    };
    let mut tokens = in_parallel(&pairs[..warm], 12, first);
    let (heap_warm, rss_warm) = (envoy_allocated(&envoy), envoy_rss(&envoy));
    tokens.extend(in_parallel(&pairs[warm..], 12, first));
    let (heap_all, rss_all) = (envoy_allocated(&envoy), envoy_rss(&envoy));
    let served = started.elapsed();

    // Each user their own token: all distinct, and a sample asked again gets the same one
    // (from the cache, or fetched again after an eviction: the connection's token).
    let distinct: std::collections::HashSet<&String> = tokens.iter().map(|(_, t)| t).collect();
    assert_eq!(distinct.len(), users, "every user got a token of their own");
    let longest = tokens.iter().map(|(_, t)| t.len()).max().unwrap_or(0);
    for i in (0..users).step_by((users / 200).max(1)) {
        let (status, seen) = call_envoy(&envoy, "/me/again", &jwts[i], &[]);
        assert_eq!(status, 200, "{seen}");
        assert_eq!(seen_token(&seen), tokens[i].1, "{}", subs[i]);
    }

    // The bound. Shared data holds at most MAX_ENTRIES tokens of rendered ids (no refusal or
    // refresh markers here): each an entry of its key (~45 bytes), its slot name, and the
    // token answer (the token, ~300 bytes of times, claims and one access policy), plus the
    // map's own ~200 bytes. Users beyond MAX_ENTRIES reuse slots: the heap must not grow with
    // them. Without the bound, the 8,000 users after the warm-up would add a new entry each.
    let per_entry = longest as u64 + 600;
    let bound = MAX_ENTRIES * per_entry;
    let growth = heap_all.saturating_sub(heap_warm);
    let unbounded = (users - warm) as u64 * per_entry;
    eprintln!(
        "{users} users: connections created in {created:?}, all served in {served:?}; Envoy \
         heap {heap_warm} -> {heap_all} bytes (+{growth}; the slots' bound {bound}, a key per \
         user would add {unbounded}); RSS {rss_warm} -> {rss_all}"
    );
    assert!(
        growth < bound,
        "Envoy's heap grew by {growth} bytes after the warm-up, more than the {bound} bytes all \
         {MAX_ENTRIES} slots hold"
    );
    // Per worker (2), in Wasm memory: at most MAX_ENTRIES decoded copies and 10,000 verified
    // JWTs (each the JWT, its identity, ~600 bytes of map and strings).
    let jwt_len = jwts.iter().map(String::len).max().unwrap_or(0) as u64;
    let per_worker = MAX_ENTRIES * (per_entry + 400) + 10_000 * (jwt_len + 600);
    let rss_bound = 2 * per_worker + bound + 64 * 1024 * 1024;
    assert!(
        rss_all.saturating_sub(rss_warm) < rss_bound,
        "Envoy's RSS grew by {} bytes, more than {rss_bound}",
        rss_all.saturating_sub(rss_warm)
    );
    // Debug builds (crypto optimised, see Cargo.toml) on a shared 2-core machine: about 12 ms
    // per user for the two management calls and 10 ms for the first request (2,000 users in
    // 44 s at a load average of 7).
    assert!(
        served < Duration::from_secs(20 * 60),
        "took {served:?} for {users} users"
    );
}
