// Goes through credmgr's consent flow in a real headless Chromium (Debian's `chromium`),
// as a person would: open the login link, read the interstitial and press Continue, log in
// and consent on oidc-provider's dev pages, land on the post-login URL.
//
//   node consent.mjs '<json options>'
//
// Options: {"login_url", "landing" (URL prefix of the post-login page), "user" (login at the
// provider)}.
//
// Prints one JSON line to stdout: {"interstitial": text, "callback_url": url,
// "landing_url": url | null, "page": text of the last page}.
//
// With {"forge_from": origin} instead of a consent, the browser opens a page of that
// (attacker's) origin that submits a form to the login link by itself, as a cross-site
// request forgery would, and prints {"forged_status": HTTP status of that POST, "page": text}. Exits 1 with a message on
// stderr when a step fails. The browser gets a fresh profile each run, so no cookie
// survives between runs (a second run is "another browser").

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

const STEP_TIMEOUT_MS = 20_000;

const options = JSON.parse(process.argv[2] || '{}');
for (const required of options.forge_from ? ['login_url'] : ['login_url', 'landing', 'user']) {
  if (!options[required]) {
    console.error(`consent.mjs: option ${required} is required`);
    process.exit(2);
  }
}

const profile = mkdtempSync(join(tmpdir(), 'credmgr-chromium-'));
let context;
try {
  // A persistent context on a fresh directory is Chromium's --user-data-dir.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // Without these, Chromium's calls home fail noisily on a machine with no internet.
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = context.pages()[0] || await context.newPage();

  // eslint-disable-next-line no-labels
  flow: {
  if (options.forge_from) {
    const attack = `${options.forge_from}/attack`;
    await page.route(attack, (route) => route.fulfill({
      status: 200,
      contentType: 'text/html',
      body: `<html><body><form method="post" action="${options.login_url}"></form>`
        + '<script>document.forms[0].submit()</script></body></html>',
    }));
    const posted = page.waitForResponse((r) => r.url() === options.login_url
      && r.request().method() === 'POST');
    await page.goto(attack);
    const response = await posted;
    await page.waitForLoadState('load');
    const text = await page.locator('body').innerText().catch(() => '');
    process.stdout.write(`${JSON.stringify({ forged_status: response.status(), page: text })}\n`);
    break flow;
  }

  let callbackUrl = null;
  // The post-login page belongs to the operator's application, which does not run in the
  // tests: the browser answers it itself.
  await page.route(`${options.landing}**`, (route) => route.fulfill({
    status: 200, contentType: 'text/html', body: '<html><body>post-login page</body></html>',
  }));
  // The provider reaches the callback through a redirect, which routes do not see.
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/oauth2/callback') callbackUrl = request.url();
  });

  await page.goto(options.login_url);
  const interstitial = await page.locator('body').innerText();
  await page.getByRole('button', { name: 'Continue' }).click();

  // oidc-provider's login page ("Sign-in"), then its consent page ("Continue").
  await page.getByRole('button', { name: 'Sign-in' }).waitFor();
  await page.locator('input[name=login]').fill(options.user);
  await page.locator('input[name=password]').fill('any-password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await page.getByRole('button', { name: 'Continue' }).click();

  await page.waitForURL((url) => url.href.startsWith(options.landing)
    || url.pathname === '/oauth2/callback', { waitUntil: 'load' });
  const landingUrl = page.url().startsWith(options.landing) ? page.url() : null;
  const text = await page.locator('body').innerText().catch(() => '');
  process.stdout.write(`${JSON.stringify({
    interstitial, callback_url: callbackUrl, landing_url: landingUrl, page: text,
  })}\n`);
  }
} catch (err) {
  console.error(`consent.mjs: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await context?.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
