// A real OAuth2 authorization server (panva's oidc-provider) and a
// resource server that accepts only live access tokens of that provider,
// for tests/oauth. Both listen on 127.0.0.1 over TLS with certificates of
// the test CA.
//
//   node oauth_server.mjs CONFIG.json
//
// CONFIG: {"cert": PEM path, "key": PEM path, "ca": PEM path,
//          "access_ttl": seconds, "client_id", "client_secret"}
// Prints one JSON line when both listen: {"issuer", "token_url",
// "api_port"}. The resource server also answers the test's control
// requests under /__admin/ (never through the gateway):
//   GET  /__admin/stats          token requests by grant, tokens issued,
//                                and the last authorization request's
//                                query (PKCE and state, for the Connect test)
//   POST /__admin/refresh-token  a first refresh token, by the
//                                authorization-code flow through the
//                                provider's dev login and consent pages
//   POST /__admin/revoke-access  every access token issued so far dies
//   POST /__admin/revoke-grants  every refresh token dies (invalid_grant)
//   POST /__admin/slow?ms=N      the token endpoint stalls N ms
import fs from 'node:fs';
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';
import { Agent } from 'undici';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const tls = { cert: fs.readFileSync(config.cert), key: fs.readFileSync(config.key) };
const agent = new Agent({ connect: { ca: fs.readFileSync(config.ca) } });
const REDIRECT = 'https://client.test.local/cb';
// The dashboard's Connect (tests/oauth/connect.rs): any port of loopback,
// as RFC 8252 §7.3 allows a native client; the dashboard's port is the
// kernel's choice.
const DASHBOARD_REDIRECT = 'http://127.0.0.1/oauth2/callback';

const stats = {
  token_requests: 0,
  by_grant: {},
  issued: [],
  api_ok: 0,
  api_unauthorized: 0,
  last_authorization: null,
};
let slowMs = 0;

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const authServer = https.createServer(tls);
const authPort = await listen(authServer);
const issuer = `https://127.0.0.1:${authPort}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client_id,
    client_secret: config.client_secret,
    application_type: 'native',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: [REDIRECT, DASHBOARD_REDIRECT],
    scope: 'openid offline_access api:read',
  }],
  scopes: ['openid', 'offline_access', 'api:read'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: config.access_ttl,
    ClientCredentials: config.access_ttl,
    RefreshToken: 86400,
    Grant: 86400,
    Session: 86400,
    Interaction: 600,
    AuthorizationCode: 60,
  },
  cookies: { keys: [randomBytes(16).toString('hex')] },
});
// Unhandled provider errors are the test's business, not a crash.
provider.on('server_error', (_ctx, err) => console.error('server_error', err.message));

// Counts every token request and keeps what it issued, so the test can
// check counts and scan the gateway's outputs for each token.
provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    stats.last_authorization = Object.fromEntries(new URLSearchParams(ctx.querystring));
  }
  const isToken = ctx.method === 'POST' && ctx.path === '/token';
  if (isToken && slowMs > 0) {
    await new Promise((r) => setTimeout(r, slowMs));
  }
  await next();
  if (isToken) {
    stats.token_requests += 1;
    const grant = ctx.oidc?.params?.grant_type ?? 'unknown';
    stats.by_grant[grant] = (stats.by_grant[grant] ?? 0) + 1;
    const body = ctx.body ?? {};
    for (const t of [body.access_token, body.refresh_token, body.id_token]) {
      if (typeof t === 'string') stats.issued.push(t);
    }
  }
});
authServer.on('request', provider.callback());

// The resource server: a live access token of this provider, or 401.
async function liveToken(value) {
  const token = (await provider.AccessToken.find(value))
    ?? (await provider.ClientCredentials.find(value));
  return token && !token.isExpired ? token : undefined;
}

const revoked = new Set();

async function api(req, res) {
  const auth = req.headers.authorization ?? '';
  const value = auth.startsWith('Bearer ') ? auth.slice(7) : '';
  const token = value && !revoked.has(value) ? await liveToken(value) : undefined;
  res.setHeader('content-type', 'application/json');
  if (!token) {
    stats.api_unauthorized += 1;
    res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"' });
    res.end(JSON.stringify({ error: 'invalid_token' }));
    return;
  }
  stats.api_ok += 1;
  // A careless debug endpoint: the token it was sent, in a header and the body.
  const echo = req.url.startsWith('/echo-token') ? { token: value } : {};
  if (echo.token) res.setHeader('x-echo-token', value);
  res.end(JSON.stringify({ ok: true, client: token.clientId, kind: token.kind, path: req.url, ...echo }));
}

// A tiny cookie jar for the dev interaction pages.
function collect(jar, res) {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const eq = pair.indexOf('=');
    jar.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
}
const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

async function step(jar, url, form) {
  const res = await fetch(new URL(url, issuer), {
    method: form ? 'POST' : 'GET',
    redirect: 'manual',
    dispatcher: agent,
    headers: {
      cookie: cookieHeader(jar),
      ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
    },
    body: form ? new URLSearchParams(form).toString() : undefined,
  });
  collect(jar, res);
  await res.arrayBuffer();
  const location = res.headers.get('location');
  if (!location) throw new Error(`${url}: HTTP ${res.status} without a redirect`);
  return location;
}

// The authorization-code flow (PKCE, state) through the dev login and
// consent pages, as a browser would post them; then the code exchange.
async function firstRefreshToken() {
  const jar = new Map();
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(8).toString('hex');
  const auth = new URL('/auth', issuer);
  auth.search = new URLSearchParams({
    client_id: config.client_id,
    response_type: 'code',
    redirect_uri: REDIRECT,
    scope: 'openid offline_access api:read',
    prompt: 'consent',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  let location = await step(jar, auth.toString());
  for (let i = 0; i < 8 && !location.startsWith(REDIRECT); i += 1) {
    if (location.includes('/interaction/')) {
      const uid = location.split('/interaction/')[1].split(/[/?]/)[0];
      const page = await fetch(new URL(location, issuer), {
        dispatcher: agent,
        headers: { cookie: cookieHeader(jar) },
      });
      collect(jar, page);
      const html = await page.text();
      const prompt = html.includes('name="login"') ? 'login' : 'consent';
      const form = prompt === 'login'
        ? { prompt, login: 'agent-owner', password: 'any' }
        : { prompt };
      location = await step(jar, `/interaction/${uid}`, form);
    } else {
      location = await step(jar, location);
    }
  }
  const back = new URL(location);
  if (back.searchParams.get('state') !== state) throw new Error(`no code: ${location}`);
  const code = back.searchParams.get('code');
  const basic = Buffer.from(`${config.client_id}:${config.client_secret}`).toString('base64');
  const res = await fetch(new URL('/token', issuer), {
    method: 'POST',
    dispatcher: agent,
    headers: {
      authorization: `Basic ${basic}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier,
    }).toString(),
  });
  const body = await res.json();
  if (!body.refresh_token) throw new Error(`no refresh token: HTTP ${res.status} ${body.error}`);
  return body.refresh_token;
}

async function destroyAll(model) {
  for (const value of stats.issued) {
    const token = await model.find(value);
    if (token) await token.destroy();
  }
}

async function admin(req, res, url) {
  res.setHeader('content-type', 'application/json');
  try {
    switch (url.pathname) {
      case '/__admin/stats':
        res.end(JSON.stringify(stats));
        return;
      case '/__admin/refresh-token':
        res.end(JSON.stringify({ refresh_token: await firstRefreshToken() }));
        return;
      case '/__admin/revoke-access':
        for (const t of stats.issued) revoked.add(t);
        await destroyAll(provider.AccessToken);
        await destroyAll(provider.ClientCredentials);
        res.end('{}');
        return;
      case '/__admin/revoke-grants':
        await destroyAll(provider.RefreshToken);
        res.end('{}');
        return;
      case '/__admin/slow':
        slowMs = Number(url.searchParams.get('ms') ?? '0');
        res.end('{}');
        return;
      default:
        res.writeHead(404);
        res.end('{}');
    }
  } catch (e) {
    res.writeHead(500);
    res.end(JSON.stringify({ error: String(e.message) }));
  }
}

const apiServer = https.createServer(tls, (req, res) => {
  const url = new URL(req.url, 'https://api.test.local');
  const handle = url.pathname.startsWith('/__admin/') ? admin(req, res, url) : api(req, res);
  handle.catch((e) => {
    res.writeHead(500);
    res.end(JSON.stringify({ error: String(e.message) }));
  });
});
const apiPort = await listen(apiServer);

console.log(JSON.stringify({ issuer, token_url: `${issuer}/token`, api_port: apiPort }));
