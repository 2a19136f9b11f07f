"""schemathesis checks of scripts/openapi-check (loaded with SCHEMATHESIS_HOOKS=openapi_hooks).

- `no_secret_in_answer`: no answer, body or header, holds a seeded secret (client secret,
  refresh token, webhook signing key); the seeded access tokens appear only in a 200 of the runtime token call.
- `filter_path_parameters` keeps PUT and DELETE off the seeded resources.
- `no_unexpected_server_error`: no 5xx, except the 503s the runtime token call documents for
  a connection without a usable token (its `error.code` says why) and the consent pages' 502
  (a provider that did not exchange a code).
"""

import json
import os

import schemathesis

SECRETS = json.loads(os.environ.get("OPENAPI_CHECK_SECRETS", "[]"))
ACCESS_TOKENS = json.loads(os.environ.get("OPENAPI_CHECK_ACCESS_TOKENS", "[]"))
TOKEN_PATH = "/runtime/v1/providers/{provider_id}/connections/{connection_id}/token"
NO_USABLE_TOKEN = {
    "consent_required",
    "refresh_token_invalid",
    "refresh_token_expired",
    "client_secret_rejected",
    "provider_unreachable",
    "provider_error",
}


def _answer_text(response):
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return headers + "\n" + response.content.decode("utf-8", "replace")


SEEDED = json.loads(os.environ.get("OPENAPI_CHECK_SEEDED", "{}"))


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    """Keeps PUT and DELETE off the seeded resources, so that they stay for the whole run."""
    if ctx.operation.method.upper() not in ("PUT", "DELETE") or not path_parameters:
        return True
    return not any(
        path_parameters.get(name) in ids for name, ids in SEEDED.items()
    )


@schemathesis.check
def no_secret_in_answer(ctx, response, case):
    text = _answer_text(response)
    for secret in SECRETS:
        if secret in text:
            raise AssertionError(f"a seeded secret ({secret[:16]}...) is in the answer")
    token_answer = case.path == TOKEN_PATH and response.status_code == 200
    for token in ACCESS_TOKENS:
        if token in text and not token_answer:
            raise AssertionError(
                f"a seeded access token ({token[:16]}...) is in an answer other than the "
                "runtime API's 200"
            )


@schemathesis.check
def no_unexpected_server_error(ctx, response, case):
    status = response.status_code
    if status < 500:
        return
    if status == 503 and case.path == TOKEN_PATH:
        try:
            code = json.loads(response.content)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code in NO_USABLE_TOKEN:
            return
    if status == 502 and case.path == "/oauth2/callback":
        return
    raise AssertionError(f"server error {status}: {response.content[:300]!r}")
