// OAuth 2.0 / OpenID Connect server for credmgr's tests and demo: a thin
// configuration of the real `oidc-provider` (pinned in package.json).
//
// It prints exactly one line to stdout when ready:
//   oauth-server listening on http://127.0.0.1:<port>
// and that URL (no trailing slash) is the issuer. Everything else (oidc-provider's
// own warnings, such as the one about Node 20) goes to stderr.
//
// Environment:
//   PORT               port on 127.0.0.1 (default 0 = ephemeral)
//   ACCESS_TOKEN_TTL   seconds, client-credentials and authorization-code access tokens (3600)
//   REFRESH_TOKEN_TTL  seconds, refresh tokens, renewed on every rotation (86400)
//   OAUTH_CLIENTS      JSON array of oidc-provider client metadata; replaces the defaults
//   REDIRECT_URIS      comma-separated redirect URIs of the default `credmgr-demo` client
//                      (default http://127.0.0.1:8080/oauth2/callback)
//   JWT_AUDIENCE       when set, access tokens are JWTs (RS256) for this audience, the
//                      default resource; a token request's `resource` parameter names another
//   CLIENT_TOKEN_TTLS  JSON object: client id -> access-token lifetime in seconds (JWT tokens)
//   TOKEN_GROUPS       JSON object: subject (account or client id) -> list of group ids, put
//                      in the `groups` claim of JWT access tokens
//   SIGNING_KEYS_FILE  JSON file with an array of private JWKs; the first signs. Without it,
//                      a fresh key per start. Tests rotate keys by restarting with a new file.
//
// State (tokens, grants, sessions) lives in memory and dies with the process.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

function envSeconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`oauth-server: ${name} must be a positive integer number of seconds, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return value;
}

const PORT = (() => {
  const raw = process.env.PORT || '0';
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`oauth-server: PORT must be a port number (0 for an ephemeral one), got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return port;
})();
const ACCESS_TOKEN_TTL = envSeconds('ACCESS_TOKEN_TTL', 3600);
const REFRESH_TOKEN_TTL = envSeconds('REFRESH_TOKEN_TTL', 86400);
const JWT_AUDIENCE = process.env.JWT_AUDIENCE || '';

function envJson(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  try {
    return JSON.parse(raw);
  } catch (err) {
    console.error(`oauth-server: ${name} must be JSON: ${err.message}`);
    process.exit(2);
  }
}
const CLIENT_TOKEN_TTLS = envJson('CLIENT_TOKEN_TTLS', {});
const GROUPS = envJson('TOKEN_GROUPS', {});

function loadClients() {
  if (process.env.OAUTH_CLIENTS) {
    try {
      const clients = JSON.parse(process.env.OAUTH_CLIENTS);
      if (!Array.isArray(clients)) throw new Error('not a JSON array');
      return clients;
    } catch (err) {
      console.error(`oauth-server: OAUTH_CLIENTS must be a JSON array of client metadata: ${err.message}`);
      process.exit(2);
    }
  }
  const redirectUris = (process.env.REDIRECT_URIS || 'http://127.0.0.1:8080/oauth2/callback')
    .split(',').map((s) => s.trim()).filter(Boolean);
  return [
    {
      // The client credmgr's control plane uses: client credentials and
      // authorization code (+ refresh) connections.
      client_id: 'credmgr-demo',
      client_secret: 'credmgr-demo-secret',
      client_name: 'credmgr demo',
      grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris,
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'api:read api:write openid offline_access',
    },
    {
      // The demo backend: a resource server that only introspects tokens.
      client_id: 'demo-backend',
      client_secret: 'demo-backend-secret',
      client_name: 'credmgr demo backend',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ];
}

// A fresh signing key per start (ID tokens; later JWT access tokens). Tests never
// keep tokens across restarts, so there is nothing to persist.
function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: `k-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

function signingKeys() {
  const file = process.env.SIGNING_KEYS_FILE;
  if (!file) return [signingKey()];
  try {
    const keys = JSON.parse(readFileSync(file, 'utf8'));
    if (!Array.isArray(keys) || keys.length === 0) throw new Error('not a non-empty JSON array');
    return keys;
  } catch (err) {
    console.error(`oauth-server: SIGNING_KEYS_FILE ${file}: ${err.message}`);
    process.exit(2);
  }
}

// JWT access tokens (RFC 9068) for JWT_AUDIENCE, or for the resource a request names: the
// caller identities of credmgr's identity tests.
const jwtResourceIndicators = {
  enabled: true,
  async defaultResource() { return JWT_AUDIENCE; },
  // Any absolute URI is a resource here, so a test can get a token for another audience.
  async getResourceServerInfo(_ctx, resource, client) {
    return {
      scope: 'api:read api:write',
      audience: resource,
      accessTokenTTL: CLIENT_TOKEN_TTLS[client.clientId] || ACCESS_TOKEN_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    };
  },
  useGrantedResource: () => true,
};

function configuration() {
  return {
    clients: loadClients(),
    jwks: { keys: signingKeys() },
    // The groups claim of JWT access tokens, by subject (a client's own id for client
    // credentials).
    async extraTokenClaims(_ctx, token) {
      const subject = token.accountId || token.clientId;
      const groups = GROUPS[subject];
      return groups ? { groups } : undefined;
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },

    // Every login succeeds; the account id is the login typed on the dev page.
    async findAccount(_ctx, sub) {
      return { accountId: sub, async claims() { return { sub }; } };
    },

    // api:read / api:write must be listed as provider scopes: without a resource
    // indicator oidc-provider silently drops scopes it does not know, from
    // client-credentials tokens and authorization-code tokens alike. Listed here,
    // they are granted on the consent page and checked against each client's
    // `scope` allow-list.
    // When JWT access tokens arrive (see resourceIndicators below) they move to the
    // resource server's `scope` and leave this list.
    scopes: ['openid', 'offline_access', 'api:read', 'api:write'],

    // Authorization code only (no implicit or hybrid flows).
    responseTypes: ['code'],

    features: {
      // Built-in login/consent pages under /interaction/:uid (any login and password).
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // A client may introspect its own tokens. A resource server (a client with no
        // grant types, such as `demo-backend`) may introspect any token. oidc-provider's
        // default lets every confidential client introspect every token.
        async allowedPolicy(ctx, client, token) {
          return token.clientId === client.clientId || client.grantTypes.length === 0;
        },
      },
      revocation: {
        enabled: true,
        // Only the client a token was issued to may revoke it (RFC 7009 §2.1).
        async allowedPolicy(ctx, client, token) {
          return token.clientId === client.clientId;
        },
      },
      // Access tokens are opaque while no resource indicator is requested or defaulted.
      // To issue JWT access tokens: make defaultResource return the API's identifier
      // (e.g. 'http://127.0.0.1:8000') and return from getResourceServerInfo
      //   { scope: 'api:read api:write', audience: resource, accessTokenTTL: ACCESS_TOKEN_TTL,
      //     accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }
      // then publish /jwks to the verifier.
      resourceIndicators: JWT_AUDIENCE ? jwtResourceIndicators : {
        enabled: true,
        async defaultResource() { return undefined; },
        async getResourceServerInfo() { throw new errors.InvalidTarget(); },
      },
    },

    // PKCE (S256, the only method oidc-provider 9 accepts) on every authorization request.
    pkce: { required: () => true },

    // Refresh tokens for every authorization-code grant of a client allowed the
    // refresh_token grant. oidc-provider's default also wants the offline_access
    // scope, which it silently drops unless prompt=consent is sent.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    // Rotate on every use; presenting a used refresh token revokes the whole grant.
    rotateRefreshToken: true,
    // Revoking any token at /token/revocation revokes its whole grant, refresh tokens
    // included, as "disconnect this app" does at many providers. (oidc-provider's default
    // keeps the grant when an access token is revoked.) Tests use it to revoke a user's
    // consent with only the access token in hand.
    async revokeGrantPolicy() { return true; },
    // Tokens outlive the browser session at the provider (offline access).
    async expiresWithSession() { return false; },

    ttl: {
      // A resource server's own lifetime (CLIENT_TOKEN_TTLS) wins over ACCESS_TOKEN_TTL.
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || ACCESS_TOKEN_TTL,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || ACCESS_TOKEN_TTL,
      RefreshToken: REFRESH_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      // Refreshing never extends the grant; keep it well past any refresh token.
      Grant: 365 * 24 * 3600,
    },

    clientBasedCORS: () => false,
  };
}

// --- /test/: counters for tests and the demo only; not part of any OAuth API. ---

const KNOWN_GRANTS = ['client_credentials', 'authorization_code', 'refresh_token'];
// RFC 6749 §5.2 error codes, always present so tests can read them as 0.
const KNOWN_ERRORS = ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'];

function freshStats() {
  return {
    token_requests: Object.fromEntries(KNOWN_GRANTS.map((g) => [g, 0])),
    tokens_issued: 0,
    token_errors: Object.fromEntries(KNOWN_ERRORS.map((e) => [e, 0])),
  };
}

let stats = freshStats();

// Every access and refresh token issued, so that tests can search credmgr's database and
// logs for them. Test-only, like the rest of /test/.
const issued = { access_tokens: [], refresh_tokens: [] };

function bump(counters, key) {
  counters[key] = (counters[key] || 0) + 1;
}

function testRoutesAndTokenStats(tokenPath) {
  return async function testStats(ctx, next) {
    if (ctx.path === '/test/stats' && ctx.method === 'GET') {
      ctx.body = stats;
      return;
    }
    if (ctx.path === '/test/issued-tokens' && ctx.method === 'GET') {
      ctx.body = issued;
      return;
    }
    if (ctx.path === '/test/stats/reset' && ctx.method === 'POST') {
      stats = freshStats();
      ctx.body = stats;
      return;
    }
    if (ctx.path !== tokenPath || ctx.method !== 'POST') {
      await next();
      return;
    }

    try {
      await next();
    } finally {
      // ctx.oidc exists on matched provider routes; params is unset when the body
      // could not be parsed at all.
      const grantType = ctx.oidc?.params?.grant_type;
      bump(stats.token_requests, typeof grantType === 'string' && grantType ? grantType : 'missing');
      if (ctx.status >= 200 && ctx.status < 300) {
        stats.tokens_issued += 1;
        if (typeof ctx.body?.access_token === 'string') issued.access_tokens.push(ctx.body.access_token);
        if (typeof ctx.body?.refresh_token === 'string') issued.refresh_tokens.push(ctx.body.refresh_token);
      } else {
        const code = ctx.body && typeof ctx.body === 'object' && typeof ctx.body.error === 'string'
          ? ctx.body.error
          : `http_${ctx.status}`;
        bump(stats.token_errors, code);
      }
    }
  };
}

// --- start -----------------------------------------------------------------------

// Listen first: with PORT=0 the issuer (which names the port) is known only then.
const server = createServer();
server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.use(testRoutesAndTokenStats(provider.pathFor('token')));
  server.on('request', provider.callback());
  process.stdout.write(`oauth-server listening on ${issuer}\n`);
});

server.on('error', (err) => {
  console.error(`oauth-server: ${err.message}`);
  process.exit(1);
});

function shutdown(signal) {
  console.error(`oauth-server: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  // Keep-alive connections would hold close() open; nothing here needs draining.
  server.closeAllConnections();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
