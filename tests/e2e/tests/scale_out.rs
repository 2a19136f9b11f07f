//! Three control-plane replicas on one PostgreSQL database behind one Envoy
//! (`envoy/replicas.yaml`: round robin, health checks on `/readyz`), with oidc-provider
//! rotating refresh tokens of connections whose access tokens live a few seconds. These need
//! PostgreSQL whatever `CREDMGR_E2E_STORE` says; without it (and without `DATABASE_URL` or
//! `CI`) they print that they were skipped. Their names start with `scale_out_`, so that
//! `make e2e` runs them once, in its PostgreSQL pass.

use credmgr_e2e::cluster::Cluster;
use credmgr_e2e::gate::TokenGate;
use credmgr_e2e::stack::PROVIDER;
use credmgr_e2e::traffic::{get, longest_outage, Outcome, Traffic};
use credmgr_e2e::{pg, unix_now, wait_for};
use serde_json::Value;
use std::time::Duration;

fn stat(stats: &Value, group: &str, key: &str) -> u64 {
    stats[group][key].as_u64().unwrap_or(0)
}

/// How long the soak runs: `CREDMGR_E2E_SOAK_SECS`, 60 by default (the issue asks for two
/// minutes; one keeps `make test` short, and 120 can be set for a longer run).
fn soak() -> Duration {
    Duration::from_secs(
        std::env::var("CREDMGR_E2E_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

#[test]
fn scale_out_three_replicas_under_traffic_refresh_each_token_once_and_never_reuse_a_refresh_token()
{
    if !pg::available_or_skip("three_replicas_under_traffic") {
        return;
    }
    let cluster = Cluster::start(
        &[("ACCESS_TOKEN_TTL", "6")],
        &[("CREDMGR_REFRESH_INTERVAL", "1s")],
        "c1",
        None,
    );
    // Each consent crosses replicas: link from one, Continue on the next, callback on the
    // third.
    let connections = ["c1", "c2", "c3"];
    for (i, c) in connections.iter().enumerate() {
        cluster.connect_across_replicas(c, &format!("user-{c}"), i);
    }
    let consents = stat(
        &cluster.oauth.stats(),
        "token_requests",
        "authorization_code",
    );
    assert_eq!(consents, 3);

    // c1 through Envoy (whose filter asks any replica); c2 and c3 from the runtime API of
    // each replica in turn, as gateways spread over the replicas would.
    let envoy_url = cluster.envoy.url.clone();
    let replicas: Vec<(String, String)> = cluster
        .alive()
        .iter()
        .map(|r| (r.url.clone(), r.gateway_key.clone()))
        .collect();
    let traffic = Traffic::start(5, move |t, n| {
        if t < 3 {
            let (status, body) = get(&format!("{envoy_url}/anything"), None);
            ("envoy".to_owned(), status, body)
        } else {
            let c = connections[1 + (t + n) % 2];
            let (url, key) = &replicas[n % 3];
            let path = credmgr_common::runtime::token_path(PROVIDER, c);
            let (status, body) = get(&format!("{url}{path}"), Some(key));
            (format!("runtime {c} on {url}"), status, body)
        }
    });
    let soak = soak();
    wait_for("the soak to end", soak + Duration::from_secs(5), || {
        (traffic.started.elapsed() >= soak).then_some(())
    });
    let outcomes = traffic.finish();

    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    let stats = cluster.oauth.stats();
    eprintln!(
        "soak: {}s, {} requests, {} failed; provider: {stats}",
        soak.as_secs(),
        outcomes.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, the first: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        stat(&stats, "token_errors", "invalid_grant"),
        0,
        "a refresh token was presented twice (reuse revokes the grant): {stats}"
    );
    for c in connections {
        assert_eq!(cluster.connection(c)["status"], "connected", "{c}");
    }
    // Each refresh once: every refresh the provider answered was stored by exactly one
    // replica, and there were no more than one per connection per refresh period (tokens of
    // 6 s are due after 3 s); three replicas each refreshing would make about three times as
    // many.
    let refreshes = stat(&stats, "token_requests", "refresh_token");
    let stored: usize = cluster
        .alive()
        .iter()
        .map(|r| r.process.log_text().matches("token obtained").count())
        .sum();
    assert_eq!(
        refreshes as usize, stored,
        "refreshes at the provider vs tokens stored by the replicas"
    );
    let periods = soak.as_secs() / 3 + 2;
    assert!(
        refreshes <= 3 * periods,
        "{refreshes} refreshes for 3 connections in {}s: more than one per due token",
        soak.as_secs()
    );
    assert!(
        refreshes >= 3 * (soak.as_secs() / 8),
        "only {refreshes} refreshes in {}s: the tokens were not kept fresh",
        soak.as_secs()
    );
    let scheduled_by: Vec<usize> = cluster
        .alive()
        .iter()
        .map(|r| r.process.log_text().matches("token obtained").count())
        .collect();
    eprintln!("tokens stored per replica: {scheduled_by:?}");
}

#[test]
fn scale_out_a_replica_killed_while_it_holds_the_refresh_lease_delays_the_refresh_by_at_most_the_lease(
) {
    if !pg::available_or_skip("replica_killed_holding_the_lease") {
        return;
    }
    // The refresh endpoint is a gate the test controls: it holds the first refresh, so the
    // replica that sent it is, deterministically, mid-refresh with the lease.
    let gate = TokenGate::start("");
    // Provider timeout 5 s: the lease lasts 3 × 5 + 5 = 20 s.
    let lease_secs = 20;
    let cluster = Cluster::start(
        &[("ACCESS_TOKEN_TTL", "50")],
        &[
            ("CREDMGR_REFRESH_INTERVAL", "1s"),
            ("CREDMGR_PROVIDER_TIMEOUT", "5s"),
        ],
        "c1",
        Some(&gate.url),
    );
    gate.set_upstream(&cluster.oauth.token_url());
    cluster.connect_across_replicas("c1", "alice", 0);
    let obtained = |cluster: &Cluster| -> i64 {
        cluster
            .db
            .query("SELECT obtained_at FROM tokens WHERE connection_id = 'c1'")
            .first()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let first_token = obtained(&cluster);
    gate.hold_next();

    let envoy_url = cluster.envoy.url.clone();
    let traffic = Traffic::start(2, move |_, _| {
        let (status, body) = get(&format!("{envoy_url}/anything"), None);
        ("envoy".to_owned(), status, body)
    });
    // Due at half its 50 s lifetime, a little earlier with the scheduler's jitter.
    wait_for(
        "a replica to send the refresh",
        Duration::from_secs(45),
        || (gate.held() == 1).then_some(()),
    );
    let holder = wait_for("the lease holder", Duration::from_secs(3), || {
        cluster.lease_holder("c1")
    });
    let lease_until: i64 = cluster
        .db
        .query("SELECT refresh_lease_until FROM connections WHERE id = 'c1'")
        .first()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no lease stored"));
    let mut cluster = cluster;
    cluster.replicas[holder]
        .as_mut()
        .unwrap_or_else(|| unreachable!())
        .process
        .kill();
    cluster.replicas[holder] = None;
    eprintln!(
        "killed replica {} holding the lease until {lease_until}",
        holder + 1
    );

    let refreshed_at = wait_for(
        "another replica to refresh",
        Duration::from_secs(lease_secs + 15),
        || {
            let t = obtained(&cluster);
            (t > first_token).then_some(t)
        },
    );
    // Keep the traffic going a little after the refresh.
    let until = traffic.count() + 40;
    wait_for("more traffic", Duration::from_secs(20), || {
        (traffic.count() >= until).then_some(())
    });
    let outcomes = traffic.finish();

    assert!(
        refreshed_at >= lease_until,
        "refreshed at {refreshed_at}, before the dead replica's lease ran out at {lease_until}"
    );
    assert!(
        refreshed_at <= lease_until + 8,
        "refreshed at {refreshed_at}, long after the lease ran out at {lease_until}"
    );
    let outage = longest_outage(&outcomes);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    eprintln!(
        "{} requests through Envoy, {} failed (first: {:?}), longest outage {outage:?}",
        outcomes.len(),
        failed.len(),
        failed.first()
    );
    assert!(
        outage <= Duration::from_secs(lease_secs),
        "requests through Envoy failed for {outage:?}, longer than the {lease_secs}s lease"
    );
    let stats = cluster.oauth.stats();
    assert_eq!(stat(&stats, "token_errors", "invalid_grant"), 0, "{stats}");
    assert_eq!(
        stat(&stats, "token_requests", "refresh_token"),
        1,
        "the held refresh never reached the provider; the survivor's did, once: {stats}"
    );
    assert_eq!(gate.forwarded(), 1);
    assert_eq!(cluster.connection("c1")["status"], "connected");
    assert!(unix_now() >= refreshed_at);
}

#[test]
fn scale_out_replicas_whose_database_connections_are_killed_reconnect_and_serve_again() {
    if !pg::available_or_skip("database_connections_killed") {
        return;
    }
    let cluster = Cluster::start(&[], &[("CREDMGR_REFRESH_INTERVAL", "0")], "c1", None);
    cluster.connect_across_replicas("c1", "alice", 0);
    let replicas: Vec<(String, String)> = cluster
        .alive()
        .iter()
        .map(|r| (r.url.clone(), r.gateway_key.clone()))
        .collect();
    let path = credmgr_common::runtime::token_path(PROVIDER, "c1");
    // Every runtime call reads the store.
    let traffic = Traffic::start(4, move |t, n| {
        let (url, key) = &replicas[(t + n) % 3];
        let (status, body) = get(&format!("{url}{path}"), Some(key));
        (format!("runtime on {url}"), status, body)
    });
    for round in 0..3 {
        let before = traffic.count();
        wait_for("traffic before the fault", Duration::from_secs(10), || {
            (traffic.count() >= before + 20).then_some(())
        });
        let killed = cluster.db.terminate_connections();
        eprintln!("round {round}: terminated {killed} database connections");
        assert!(
            killed > 0,
            "the replicas had no database connections to kill"
        );
    }
    for r in cluster.alive() {
        wait_for(
            "the replica to be ready again",
            Duration::from_secs(15),
            || {
                let (status, _) = get(&format!("{}/readyz", r.url), None);
                (status == 200).then_some(())
            },
        );
    }
    let recovered = traffic.count();
    wait_for("traffic after the fault", Duration::from_secs(15), || {
        (traffic.count() >= recovered + 60).then_some(())
    });
    let outcomes = traffic.finish();
    let after: Vec<&Outcome> = outcomes[recovered..].iter().collect();
    assert!(
        after.iter().all(|o| o.status == 200),
        "after reconnecting, requests still fail: {:?}",
        after
            .iter()
            .filter(|o| o.status != 200)
            .take(3)
            .collect::<Vec<_>>()
    );
    // What failed while connections died failed with the usual JSON error, never a hang
    // or a reset.
    for o in outcomes.iter().filter(|o| o.status != 200) {
        let body: Value = serde_json::from_str(&o.body)
            .unwrap_or_else(|_| panic!("a failure without a JSON body: {o:?}"));
        assert!(body["error"]["code"].is_string(), "{o:?}");
        assert_eq!(o.status, 503, "{o:?}");
    }
    eprintln!(
        "{} requests, {} failed while the connections were killed",
        outcomes.len(),
        outcomes.iter().filter(|o| o.status != 200).count()
    );

    // A database that is gone altogether: not ready, with a JSON answer that says so.
    assert!(cluster.db.drop_now(), "dropping the test database");
    let r = cluster.replica(1);
    let (status, body) = wait_for("readiness to fail", Duration::from_secs(10), || {
        let (status, body) = get(&format!("{}/readyz", r.url), None);
        (status != 200).then_some((status, body))
    });
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "store_unavailable", "{body}");
    assert_eq!(body["error"]["details"]["store"], "postgresql", "{body}");
    let (status, body) = get(&format!("{}/healthz", r.url), None);
    assert_eq!(
        status, 200,
        "liveness does not depend on the database: {body}"
    );
}

/// #19 item 8: a replica killed (SIGKILL) under steady traffic through Envoy costs no client
/// request. Tokens live 3 s, so the filter calls the control plane every second or two; a
/// call that reaches the dead replica (before Envoy's health check, every second even without
/// traffic, or its outlier detection takes it out) is made once more on another host, and the
/// cached token serves meanwhile.
#[test]
fn scale_out_a_replica_killed_under_traffic_costs_no_client_request() {
    if !pg::available_or_skip("replica_killed_under_traffic") {
        return;
    }
    let cluster = Cluster::start(
        &[("ACCESS_TOKEN_TTL", "3")],
        &[
            ("CREDMGR_REFRESH_INTERVAL", "1s"),
            ("CREDMGR_REFRESH_SKEW", "1s"),
        ],
        "c1",
        None,
    );
    cluster.connect_across_replicas("c1", "alice", 0);
    let envoy_url = cluster.envoy.url.clone();
    let traffic = Traffic::start(3, move |_, _| {
        let (status, body) = get(&format!("{envoy_url}/anything"), None);
        ("envoy".to_owned(), status, body)
    });
    let warm = traffic.count() + 60;
    wait_for("steady traffic", Duration::from_secs(30), || {
        (traffic.count() >= warm).then_some(())
    });
    let calls_before = cluster.envoy.stat("credmgr.control_plane_call");
    let mut cluster = cluster;
    let victim = 1;
    cluster.replicas[victim]
        .as_mut()
        .unwrap_or_else(|| unreachable!())
        .process
        .kill();
    cluster.replicas[victim] = None;
    // About 10 s of traffic after the kill: several token lifetimes, so the filter calls the
    // control plane several times while Envoy still counts the dead replica in.
    let until = traffic.count() + 500;
    wait_for("traffic after the kill", Duration::from_secs(60), || {
        (traffic.count() >= until).then_some(())
    });
    let outcomes = traffic.finish();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != 200).collect();
    let envoy = &cluster.envoy;
    eprintln!(
        "{} requests, {} failed; control-plane calls after the kill {}, retried {}, failed {}",
        outcomes.len(),
        failed.len(),
        envoy.stat("credmgr.control_plane_call") - calls_before,
        envoy.stat("credmgr.control_plane_retry"),
        envoy.stat("credmgr.control_plane_failure.control_plane_unavailable"),
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed after a replica was killed, the first: {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    let stats = cluster.oauth.stats();
    assert_eq!(stat(&stats, "token_errors", "invalid_grant"), 0, "{stats}");
    assert_eq!(cluster.connection("c1")["status"], "connected");
}
