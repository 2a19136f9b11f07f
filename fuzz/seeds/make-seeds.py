#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/corpus/<target>/: the shapes the tests'
fixtures and the presets use. Run by hand when a parser's input grows a new shape
(`python3 fuzz/seeds/make-seeds.py`), then `make fuzz-merge` keeps the corpus small.
The JWT seeds for signed tokens are made by the target itself (mode 1), so none holds a key."""
import base64
import hashlib
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def j(v):
    return json.dumps(v, separators=(",", ":"))


# ---- filter_config ----
gac = {"provider-id": "gh", "authorization-id": "alice", "context-variable-name": "auth",
       "identity-type": "managed"}
base = {
    "control_plane": {"cluster": "cp", "gateway_key": "gateway-key-123456"},
    "default_policy": "p",
    "policies": {"p": [
        {"get-authorization-context": gac},
        {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}},
    ]},
}
put("filter_config", j(base))
put("filter_config", json.dumps(base, indent=2))
full = {
    "control_plane": {"cluster": "credmgr_control_plane", "authority": "cp.internal",
                      "timeout_ms": 2000},
    "cache": {"expiry_margin_ms": 500, "refresh_tick_ms": 100, "denial_ttl_ms": 1000,
              "revalidate_ms": 500},
    "policies": {
        "jwt": [
            {"get-authorization-context": {"provider-id": "entra", "authorization-id": "svc",
                                           "context-variable-name": "auth",
                                           "identity-type": "jwt",
                                           "identity": "{{request.headers.authorization}}",
                                           "ignore-error": True}},
            {"set-header": {"name": "x-token", "exists-action": "skip",
                            "value": ["{{auth.AccessToken}}", "scope={{auth.Claims.scope}}"]}},
            {"set-header": {"name": "x-remove", "exists-action": "delete"}},
            {"set-header": {"name": "x-add", "exists-action": "append",
                            "value": "{{request.headers.x-user}}"}},
        ],
        "two": [
            {"get-authorization-context": gac},
            {"get-authorization-context": dict(gac, **{"context-variable-name": "b",
                                                        "provider-id": "slack"})},
            {"set-header": {"name": "Authorization", "value": "Bearer {{b.AccessToken}}"}},
        ],
    },
}
put("filter_config", j(full))
# Request-matching rules (issue #19's other helper adds them to the configuration).
rules = dict(base, rules=[{"match": {"host": "*.example.com", "path_prefix": "/a/",
                                     "methods": ["GET"],
                                     "headers": [{"name": "x-t", "value": "a"}]},
                           "policy": "p"}])
put("filter_config", j(rules))
bad = dict(base, default_policy="nope")
put("filter_config", j(bad))

# ---- template ----
for t in ["Bearer {{auth.AccessToken}}", "{{ auth.Claims.scope }}", "{{request.headers.X-User}}",
          "a{{b.Claims.c.d}}e{{request.headers.h}}f", "token {{auth.AccessToken", "{{}}",
          "{{request.AccessToken}}", "plain"]:
    put("template", t)

# ---- token_response: byte 0 status (index), byte 1 preset index << 1 | form label ----
STATUSES = [200, 201, 204, 301, 302, 400, 401, 403, 404, 429, 500, 503]
PRESETS = ["<default>", "oauth2.json", "oauth2-pkce.json", "entra-id.json", "google.json",
           "github.json", "github-app.json", "salesforce.json", "slack.json", "slack-user.json"]


def token(status, preset, form, body):
    put("token_response", bytes([STATUSES.index(status), PRESETS.index(preset) << 1 | form])
        + body.encode())


token(200, "<default>", 0, j({"access_token": "at-1", "token_type": "bearer", "expires_in": 3600,
                              "refresh_token": "rt", "id_token": "idt", "scope": "api:read",
                              "instance_url": "x"}))
token(200, "<default>", 0, j({"access_token": "a", "expires_in": "59",
                              "refresh_token_expires_in": 100}))
token(200, "github.json", 1, "access_token=gho_x&scope=repo%2Cgist&token_type=bearer")
token(200, "github.json", 0, "error=bad_verification_code&error_description=gone")
token(200, "slack-user.json", 0, j({"ok": True, "access_token": "xoxb", "team": {"id": "T1"},
                                    "authed_user": {"id": "U1", "access_token": "xoxp",
                                                    "refresh_token": "r", "scope": "chat:write",
                                                    "token_type": "user", "expires_in": 43200}}))
token(200, "slack.json", 0, j({"ok": True, "access_token": "xoxb", "team": {"id": "T1"},
                               "authed_user": {"id": "U1"}, "list": [{"id_token": "i", "k": 1}]}))
# A lifted claim (slack's /team/id) that is an object holding a token.
token(200, "slack.json", 0, j({"access_token": "a", "team": {"id": {"access_token": "x", "k": 1}}}))
token(401, "<default>", 0, j({"error": "invalid_client", "error_description": "no such client"}))
token(400, "slack.json", 0, j({"error": "invalid_refresh_token"}))
token(500, "<default>", 0, "<html>oops</html>")
jwt_payload = base64.urlsafe_b64encode(b'{"exp":1700000000,"sub":"x"}').rstrip(b"=").decode()
token(200, "salesforce.json", 0, j({"access_token": "eyJhbGciOiJub25lIn0." + jwt_payload + ".sig"}))

# The providers' documented answers the tests replay (tests/provider-responses/), each with
# its preset, and the slack-user preset for Slack's v2 answer too.
RESPONSES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                         "provider-responses")
for name, preset in [("dropbox-refresh.json", "<default>"), ("dropbox-token.json", "<default>"),
                     ("entra-client-credentials.json", "entra-id.json"),
                     ("github-app-bad-refresh-token.form", "github-app.json"),
                     ("github-app-token.json", "github-app.json"),
                     ("github-bad-verification-code.json", "github.json"),
                     ("github-token.form", "github.json"),
                     ("salesforce-refresh.json", "salesforce.json"),
                     ("salesforce-token.json", "salesforce.json"),
                     ("slack-invalid-code.json", "slack.json"),
                     ("slack-oauth-v2-access.json", "slack.json"),
                     ("slack-oauth-v2-access.json", "slack-user.json"),
                     ("zoom-token.json", "<default>")]:
    with open(os.path.join(RESPONSES, name)) as f:
        token(200, preset, int(name.endswith(".form")), f.read())

# ---- jwt_verify: byte 0 even: a token; odd: header length, header, claims, signed ----
ISS = "https://issuer.example"
NOW = 1_800_000_000
claims = {"iss": ISS, "aud": "api://backend", "sub": "u1", "oid": "o1", "tid": "t1",
          "azp": "app", "groups": ["g1", "g2"], "exp": NOW + 600, "nbf": NOW - 10}
for mode, hdr in [(1, {"alg": "EdDSA", "kid": "ed"}), (3, {"alg": "ES256", "kid": "es"}),
                  (1, {"alg": "EdDSA"}), (1, {"alg": "EdDSA", "kid": "other"})]:
    h = j(hdr).encode()
    put("jwt_verify", bytes([mode, len(h)]) + h + j(claims).encode())
h = j({"alg": "EdDSA", "kid": "ed"}).encode()
put("jwt_verify", bytes([1, len(h)]) + h + j(dict(claims, exp=NOW - 100)).encode())
put("jwt_verify", bytes([1, len(h)]) + h + j(dict(claims, aud=["x", "api://backend"])).encode())


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


for hdr in [{"alg": "RS256", "kid": "rs"}, {"alg": "none"}, {"alg": "HS256", "kid": "hmac"}]:
    put("jwt_verify", b"\x00" + (b64(j(hdr).encode()) + "." + b64(j(claims).encode()) + ".c2ln").encode())

# ---- jwks: byte 0 leeway (as i8) ----
ed = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"}
es = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
      "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "es", "alg": "ES256"}
rs = {"kty": "RSA", "kid": "rs", "e": "AQAB", "alg": "RS256", "use": "sig",
      "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
put("jwks", b"\x1e" + j({"keys": [ed, es, rs]}).encode())
put("jwks", b"\x00" + j({"keys": [{"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
                                  {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]}).encode())
put("jwks", b"\xf0" + j({"keys": []}).encode())
put("jwks", b"\x05" + j({"keys": [dict(es, crv="P-384")]}).encode())

# ---- key_file ----
k1 = base64.b64encode(bytes(range(32))).decode()
k2 = base64.b64encode(bytes(range(32, 64))).decode()
put("key_file", f"# credmgr keys\nkey-1:{k1}\n")
put("key_file", f"key-1:{k1}\nkey-2:{k2}\nactive=key-2\n")
put("key_file", f"key-1:{k1}\nkey-2:{k2}\n")
put("key_file", "k1:c2hvcnQ=\n")
put("key_file", "k1:not base64!!secretish\nbad/id:AAAA\nno-colon\n")

# ---- runtime_answer: byte 0 status index ----
RSTAT = [None, 200, 400, 401, 403, 404, 500, 502, 503, 504]


def answer(status, body):
    put("runtime_answer", bytes([RSTAT.index(status)]) + body.encode())


answer(200, j({"access_token": "tok-123456789", "token_type": "Bearer", "expires_at": NOW + 3600,
               "refresh_at": NOW + 3000, "claims": {"scope": "repo"},
               "access_policies": [{"object_id": "o1", "tenant_id": "t1"}]}))
answer(200, j({"issuers": [{"issuer": ISS, "audiences": ["api://backend"],
                            "claims": {"object": ["oid", "sub"], "tenant": "tid",
                                       "application": ["azp"], "groups": "groups"},
                            "leeway_seconds": 30, "jwks": {"keys": [ed, es]}}],
               "refresh_after_seconds": 300}))
answer(401, j({"error": {"code": "jwt_expired", "message": "the token has expired"}}))
answer(401, j({"error": {"code": "consent_required", "message": "consent",
                         "details": {"login_url": "https://cp.example/login/x"}}}))
answer(403, j({"error": {"code": "policy_denied", "message": "no"}}))
answer(503, "no healthy upstream")
answer(None, "")
print("seeds written under", os.path.normpath(ROOT), file=sys.stderr)
