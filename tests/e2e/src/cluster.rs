//! Several control-plane replicas on one PostgreSQL database, as a scaled-out deployment runs
//! them: one key file, one admin token and gateway key, one public URL (the address users' browsers and the provider's redirect
//! use; replica 1's here, standing in for a load balancer), and an Envoy whose control-plane
//! cluster balances over all of them (`envoy/replicas.yaml`).

use crate::consent::{consent_provider_body, HttpBrowser};
use crate::control_plane::ControlPlane;
use crate::pg::TestDatabase;
use crate::stack::{Backend, Deployment, Envoy, OAuthServer, PROVIDER};
use crate::{artifact, free_port};
use serde_json::{json, Value};
use std::sync::Arc;

pub struct Cluster {
    // Field order is drop order: Envoy first, the database (dropped) after the replicas.
    pub envoy: Envoy,
    pub backend: Backend,
    /// `None` once killed.
    pub replicas: Vec<Option<ControlPlane>>,
    pub oauth: OAuthServer,
    pub db: Arc<TestDatabase>,
    pub public_url: String,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the OAuth server (with `oauth_env`), three replicas at once on a new database
    /// (with `cp_env`; they race to migrate it), the backend, and Envoy for the connection
    /// `demo`/`envoy_connection`. The provider `demo` uses the authorization-code grant; its
    /// refresh endpoint is `refresh_url` when given.
    pub fn start(
        oauth_env: &[(&str, &str)],
        cp_env: &[(&str, &str)],
        envoy_connection: &str,
        refresh_url: Option<&str>,
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("credmgr-e2e-cluster-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let db = Arc::new(TestDatabase::create());
        let ports = [free_port(), free_port(), free_port()];
        let public_url = format!("http://127.0.0.1:{}", ports[0]);
        let callback = format!("{public_url}/oauth2/callback");
        let mut env = oauth_env.to_vec();
        env.push(("REDIRECT_URIS", &callback));
        let oauth = OAuthServer::start(dir.path(), &env);

        let key_file = dir.path().join("keys");
        let key = std::process::Command::new(artifact("CREDMGR_BIN", "target/debug/credmgr"))
            .args(["gen-key", "--id", "shared"])
            .output()
            .unwrap_or_else(|e| panic!("credmgr gen-key: {e}"));
        std::fs::write(&key_file, &key.stdout).unwrap_or_else(|e| panic!("key file: {e}"));
        let admin_token = format!("admin-{}", crate::stack::random_hex());
        let gateway_keys = format!("test-gateway=gw-{}", crate::stack::random_hex());
        let starts: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, &port)| {
                let replica_dir = dir.path().join(format!("replica-{}", i + 1));
                std::fs::create_dir_all(&replica_dir).unwrap_or_else(|e| panic!("{e}"));
                let mut env: Vec<(String, String)> = vec![
                    ("CREDMGR_KEY_FILE".into(), key_file.display().to_string()),
                    ("CREDMGR_DATABASE_URL".into(), db.url.clone()),
                    ("CREDMGR_PUBLIC_URL".into(), public_url.clone()),
                    ("CREDMGR_ADMIN_TOKEN".into(), admin_token.clone()),
                    ("CREDMGR_GATEWAY_KEYS".into(), gateway_keys.clone()),
                ];
                env.extend(
                    cp_env
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                );
                std::thread::spawn(move || {
                    let env: Vec<(&str, &str)> =
                        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    ControlPlane::start_with(&replica_dir, port, &env)
                })
            })
            .collect();
        let replicas: Vec<Option<ControlPlane>> = starts
            .into_iter()
            .map(|t| {
                Some(
                    t.join()
                        .unwrap_or_else(|_| panic!("a replica did not start")),
                )
            })
            .collect();
        let backend = Backend::start(dir.path(), &oauth);
        let first = replicas[0].as_ref().unwrap_or_else(|| unreachable!());
        let mut provider = consent_provider_body(&oauth);
        if let Some(url) = refresh_url {
            provider["refresh_url"] = json!(url);
        }
        let (status, body) =
            first.admin("PUT", &format!("/v1/providers/{PROVIDER}"), Some(provider));
        assert_eq!(status, 201, "creating the provider: {body}");

        let mut vars = Deployment::envoy_vars(first, &backend);
        vars.retain(|(k, _)| *k != "CREDMGR_CONNECTION_ID");
        vars.push(("CREDMGR_CONNECTION_ID", envoy_connection.to_owned()));
        vars.push(("CONTROL_PLANE_PORT_2", ports[1].to_string()));
        vars.push(("CONTROL_PLANE_PORT_3", ports[2].to_string()));
        let envoy = Envoy::start(dir.path(), "replicas.yaml", &vars);
        Cluster {
            envoy,
            backend,
            replicas,
            oauth,
            db,
            public_url,
            dir,
        }
    }

    /// Replica `i` (0-based); panics if it was killed.
    pub fn replica(&self, i: usize) -> &ControlPlane {
        self.replicas[i]
            .as_ref()
            .unwrap_or_else(|| panic!("replica {} was killed", i + 1))
    }

    /// The replicas still running.
    pub fn alive(&self) -> Vec<&ControlPlane> {
        self.replicas.iter().flatten().collect()
    }

    /// Creates connection `c` (through replica `via`) and has `user` consent to it with the
    /// consent's steps on three different replicas: the login link from replica `via`, the
    /// interstitial's Continue on the next one, the provider's callback on the one after. The
    /// consent state lives in the database, so any replica can finish what another began.
    pub fn connect_across_replicas(&self, c: &str, user: &str, via: usize) {
        let on = |i: usize, url: &str| -> String {
            let r = self.replica(i % 3);
            url.replacen(&self.public_url, &r.url, 1)
        };
        self.replica(via)
            .create_connection(PROVIDER, c, &format!("{user}'s account"));
        // The gateway's access policy, written through another replica.
        self.replica((via + 1) % 3).allow_test_gateway(PROVIDER, c);
        let link = self.replica(via).login_link(PROVIDER, c);
        assert!(link.starts_with(&self.public_url), "{link}");
        let browser = HttpBrowser::new();
        let (status, authorize) = browser.continue_login(&on(via + 1, &link));
        assert_eq!(status, 303, "Continue on replica {}", (via + 1) % 3 + 1);
        let authorize = authorize.unwrap_or_else(|| panic!("no redirect to the provider"));
        let callback = browser.consent_at_provider(&authorize, user);
        assert!(callback.starts_with(&self.public_url), "{callback}");
        let (status, landing, page) = browser.get(&on(via + 2, &callback));
        let landing = landing.unwrap_or_default();
        assert!(
            (300..400).contains(&status) && landing.contains("credmgr_status=connected"),
            "the callback on replica {} did not connect {c}: {status} {landing} {page}",
            (via + 2) % 3 + 1
        );
        assert_eq!(self.connection(c)["status"], "connected");
    }

    /// The connection as a running replica's management API shows it.
    pub fn connection(&self, c: &str) -> Value {
        self.alive()[0].connection(PROVIDER, c)
    }

    /// Which replica holds connection `c`'s refresh lease now, by the id each logs at start.
    pub fn lease_holder(&self, c: &str) -> Option<usize> {
        let owner = self
            .db
            .query(&format!(
                "SELECT refresh_lease_owner FROM connections WHERE id = '{c}' \
                 AND refresh_lease_until > extract(epoch FROM now())::bigint"
            ))
            .into_iter()
            .next()
            .filter(|o| !o.is_empty())?;
        self.replicas.iter().position(|r| {
            r.as_ref().is_some_and(|r| {
                r.process
                    .log_text()
                    .contains(&format!("lease_owner={owner}"))
            })
        })
    }
}
