// The API docs work offline: /openapi.json is generated from the validating
// zod schemas, and Swagger UI (/docs) and ReDoc (/redoc) load every asset from
// this process — no CDN, no fonts, no validator — both statically (the HTML)
// and in a real headless Chromium (every request the page makes).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestCentral, type TestCentral } from './support/central.js';

const CHROMIUM = process.env.OPSDB_TEST_CHROMIUM ?? '/usr/bin/chromium';
const DOC_PAGES = ['/docs', '/redoc'] as const;
const TIMEOUT = 30_000;

let central: TestCentral;
let origin: string;
let spec: any;

before(async () => {
  central = await startTestCentral('docs');
  origin = new URL(central.url).origin;
  const res = await fetch(`${central.url}/openapi.json`);
  assert.equal(res.status, 200, '/openapi.json status');
  spec = await res.json();
});

after(async () => {
  await central?.stop();
});

/** Follows a local `#/components/...` reference. */
function deref(node: any): any {
  if (!node?.$ref) return node;
  assert.match(node.$ref, /^#\//, `only local $refs expected, got ${node.$ref}`);
  return node.$ref.slice(2).split('/').reduce((o: any, k: string) => o?.[k], spec);
}

describe('docs: /openapi.json', () => {
  it('is OpenAPI 3.1 with the expected paths and security scheme', () => {
    assert.ok(String(spec.openapi).startsWith('3.1'), `openapi = ${spec.openapi}`);
    assert.equal(spec.info?.title, 'ops-db-api');
    for (const p of ['/health', '/executed_obs_units/start', '/api/demo/create-observation', '/instruments/', '/auth/me']) {
      assert.ok(spec.paths?.[p], `path ${p} documented; have ${Object.keys(spec.paths ?? {}).join(', ')}`);
    }
    assert.equal(spec.components?.securitySchemes?.bearerAuth?.type, 'http');
    assert.equal(spec.components?.securitySchemes?.bearerAuth?.scheme, 'bearer');
    assert.deepEqual(spec.paths['/auth/me'].get?.security, [{ bearerAuth: [] }], '/auth/me needs a bearer token');
  });

  it('documents the request body from the validating zod schema', () => {
    const body = spec.paths['/executed_obs_units/start'].post?.requestBody;
    const schema = deref(body?.content?.['application/json']?.schema);
    assert.ok(schema, `request body schema: ${JSON.stringify(body)}`);
    assert.ok(schema.properties?.obs_unit_id, 'obs_unit_id is a property');
    assert.ok(Array.isArray(schema.required) && schema.required.includes('obs_unit_id'), `required = ${JSON.stringify(schema.required)}`);
  });
});

/** Every src= / href= / spec-url= value in an HTML document. */
function referencedUrls(html: string): string[] {
  const re = /\b(?:src|href|spec-url)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/gi;
  return [...html.matchAll(re)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

describe('docs: static HTML references only local assets', () => {
  for (const path of DOC_PAGES) {
    it(`${path}`, async () => {
      const res = await fetch(`${central.url}${path}`);
      assert.equal(res.status, 200, `${path} status`);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const html = await res.text();
      const urls = referencedUrls(html);
      assert.ok(urls.some((u) => /\.js(\?|$)/.test(u)), `${path} loads at least one script: ${urls.join(', ')}`);
      for (const u of urls) {
        assert.ok(u.length > 0, `${path}: empty URL attribute`);
        const resolved = new URL(u, `${origin}${path}`);
        // Catches http://, https:// and protocol-relative //host URLs to any other origin.
        assert.equal(resolved.origin, origin, `${path} references ${u}, which is not served by this app (${origin})`);
        const asset = await fetch(resolved);
        const bytes = Buffer.from(await asset.arrayBuffer());
        assert.equal(asset.status, 200, `${path}: ${u} -> ${asset.status}`);
        assert.ok(bytes.length > 0, `${path}: ${u} has an empty body`);
      }
    });
  }
});

describe('docs: pages render in headless Chromium without leaving the app', () => {
  let browser: Browser | undefined;

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set OPSDB_TEST_CHROMIUM. This test never skips.`,
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: TIMEOUT,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
  });

  const rendered: Record<(typeof DOC_PAGES)[number], (page: Page) => Promise<unknown>> = {
    '/docs': (page) =>
      page.locator('.opblock .opblock-summary-path', { hasText: /^\/health$/ }).first().waitFor({ timeout: TIMEOUT }),
    '/redoc': async (page) => {
      await page.getByRole('heading', { level: 1, name: /ops-db-api/ }).waitFor({ timeout: TIMEOUT });
      const summary: string = spec.paths['/executed_obs_units/start'].post.summary;
      await page.locator('h2', { hasText: summary }).first().waitFor({ timeout: TIMEOUT });
    },
  };

  for (const path of DOC_PAGES) {
    it(`${path}`, { timeout: 2 * TIMEOUT }, async () => {
      assert.ok(browser, 'browser launched');
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      try {
        const requested: string[] = [];
        const failed: string[] = [];
        const pageErrors: string[] = [];
        context.on('request', (r) => void requested.push(r.url()));
        context.on('requestfailed', (r) => void failed.push(`${r.url()}: ${r.failure()?.errorText}`));
        // Never let the browser reach the outside world, even where it could:
        // a foreign request is still recorded above, and fails the test below.
        await context.route('**/*', (route) => {
          const url = route.request().url();
          return /^(data|blob):/.test(url) || new URL(url).origin === origin ? route.continue() : route.abort('blockedbyclient');
        });
        const page = await context.newPage();
        page.on('pageerror', (e) => void pageErrors.push(String(e)));

        const res = await page.goto(`${central.url}${path}`, { waitUntil: 'load', timeout: TIMEOUT });
        assert.equal(res?.status(), 200, `${path} status`);
        await rendered[path](page);
        await page.waitForLoadState('networkidle', { timeout: TIMEOUT });
        await page.screenshot({ path: `/tmp/docs-${path === '/docs' ? 'swagger' : 'redoc'}.png` });

        assert.ok(requested.includes(`${origin}/openapi.json`), `${path} fetched the spec: ${requested.join(', ')}`);
        const foreign = requested.filter((u) => !/^(data|blob):/.test(u) && new URL(u).origin !== origin);
        assert.deepEqual(foreign, [], `${path} made requests outside ${origin}`);
        assert.deepEqual(failed, [], `${path} had failed requests`);
        assert.deepEqual(pageErrors, [], `${path} threw page errors`);
      } finally {
        await context.close();
      }
    });
  }
});
