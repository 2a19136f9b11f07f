// Drives the credmgr web console in a real headless Chromium (Debian's `chromium`), as an
// operator would: sign in with the admin token, create a provider from the preset catalogue,
// create a connection, make its login link, then (as the account's owner, in another
// browser) consent through the link, and come back to see the connection connected.
//
//   node console.mjs '<json options>'
//
// Options: {"console" (the control plane's URL), "admin_token", "issuer" (the OAuth
// server's URL), "landing" (post-login URL prefix), "user", "screenshots" (a directory for
// PNGs, optional)}.
//
// Prints one JSON line: {"login_url", "providers_page", "provider_page",
// "connections_page", "keys_page", "wrong_token_page"} (page texts). Exits 1 on a failed step.

import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 20_000;
const o = JSON.parse(process.argv[2] || '{}');
for (const k of ['console', 'admin_token', 'issuer', 'landing', 'user']) {
  if (!o[k]) { console.error(`console.mjs: option ${k} is required`); process.exit(2); }
}

const launch = async (profile) => {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1200, height: 760 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  return context;
};

const shot = async (page, name) => {
  if (!o.screenshots) return;
  mkdirSync(o.screenshots, { recursive: true });
  await page.screenshot({ path: join(o.screenshots, `${name}.png`), fullPage: true });
};

const text = (page) => page.locator('main').innerText();
const profiles = [mkdtempSync(join(tmpdir(), 'credmgr-console-')),
  mkdtempSync(join(tmpdir(), 'credmgr-user-'))];
const contexts = [];
try {
  const operator = await launch(profiles[0]);
  contexts.push(operator);
  const page = operator.pages()[0] || await operator.newPage();
  const out = {};

  // Not signed in: the console sends the browser to the sign-in page. A wrong token is told.
  await page.goto(`${o.console}/console`);
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  await page.locator('input[name=admin_token]').fill('not-the-admin-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  out.wrong_token_page = await text(page);
  await page.locator('input[name=admin_token]').fill(o.admin_token);
  await shot(page, 'sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Providers' }).waitFor();

  // A preset with parameters gets a field for each (shown only: nothing runs there here).
  await page.goto(`${o.console}/console/providers/new?type=keycloak`);
  await page.locator('input[name="param.realm"]').waitFor();
  await shot(page, 'preset-form');
  await page.goto(`${o.console}/console/providers`);

  // A provider from the catalogue: the generic OAuth 2.0 with PKCE type fits the test's
  // oidc-provider; its form asks for the endpoints since the type has none of its own.
  await page.locator('select[name=type]').selectOption('oauth2-pkce');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.locator('input[name=id]').fill('demo');
  await page.locator('input[name=display_name]').fill('Test OAuth server');
  await page.locator('input[name=client_id]').fill('credmgr-demo');
  await page.locator('input[name=client_secret]').fill('credmgr-demo-secret');
  await page.locator('input[name=token_url]').fill(`${o.issuer}/token`);
  await page.locator('input[name=authorization_url]').fill(`${o.issuer}/auth`);
  await page.locator('input[name=scopes]').fill('openid api:read');
  await page.locator('input[name=redirect_urls]').fill(o.landing);
  await shot(page, 'new-provider');
  await page.getByRole('button', { name: 'Create provider' }).click();

  // A connection under it, then its login link.
  await page.getByRole('heading', { name: 'Provider Test OAuth server' }).waitFor();
  await page.locator('input[name=id]').fill('alice');
  await page.locator('input[name=display_name]').fill("Alice's account");
  await page.getByRole('button', { name: 'Create connection' }).click();
  await page.getByRole('link', { name: 'alice' }).waitFor();
  out.provider_page = await text(page);
  await shot(page, 'provider');
  await page.getByRole('button', { name: 'Login link' }).click();
  const link = page.locator('#login-link');
  await link.waitFor();
  out.login_url = await link.inputValue();
  await page.getByRole('button', { name: 'Copy' }).click();
  await shot(page, 'login-link');

  // The account's owner, in their own browser: interstitial, the provider's login and consent.
  const user = await launch(profiles[1]);
  contexts.push(user);
  const userPage = user.pages()[0] || await user.newPage();
  await userPage.route(`${o.landing}**`, (route) => route.fulfill({
    status: 200, contentType: 'text/html', body: '<html><body>post-login page</body></html>',
  }));
  await userPage.goto(out.login_url);
  await userPage.getByRole('button', { name: 'Continue' }).click();
  await userPage.getByRole('button', { name: 'Sign-in' }).waitFor();
  await userPage.locator('input[name=login]').fill(o.user);
  await userPage.locator('input[name=password]').fill('any-password');
  await userPage.getByRole('button', { name: 'Sign-in' }).click();
  await userPage.getByRole('button', { name: 'Continue' }).click();
  await userPage.waitForURL((url) => url.href.startsWith(o.landing), { waitUntil: 'load' });

  // Back in the console: the connection is connected.
  await page.goto(`${o.console}/console/connections`);
  out.connections_page = await text(page);
  await shot(page, 'connections');
  await page.goto(`${o.console}/console/providers`);
  out.providers_page = await text(page);
  await shot(page, 'providers');
  await page.goto(`${o.console}/console/keys`);
  out.keys_page = await text(page);
  await shot(page, 'keys');
  process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (err) {
  console.error(`console.mjs: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
}
