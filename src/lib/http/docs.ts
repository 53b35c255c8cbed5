/**
 * API docs served entirely from this process: the site has no internet, so
 * Swagger UI and ReDoc come from their npm packages, never from a CDN.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type Router from '@koa/router';

const require = createRequire(import.meta.url);
const SWAGGER_DIR = dirname(require.resolve('swagger-ui-dist/package.json'));
const REDOC_BUNDLE = join(dirname(require.resolve('redoc/package.json')), 'bundles', 'redoc.standalone.js');

const ASSETS: Record<string, { file: string; type: string }> = {
  '/docs/assets/swagger-ui.css': { file: join(SWAGGER_DIR, 'swagger-ui.css'), type: 'text/css; charset=utf-8' },
  '/docs/assets/swagger-ui-bundle.js': { file: join(SWAGGER_DIR, 'swagger-ui-bundle.js'), type: 'application/javascript; charset=utf-8' },
  '/docs/assets/swagger-init.js': { file: '', type: 'application/javascript; charset=utf-8' },
  '/docs/assets/favicon-32x32.png': { file: join(SWAGGER_DIR, 'favicon-32x32.png'), type: 'image/png' },
  '/redoc/assets/redoc.standalone.js': { file: '', type: 'application/javascript; charset=utf-8' },
};

// ReDoc's sidebar footer always shows a logo from cdn.redoc.ly; point it at a local (empty) image instead.
const LOCAL_LOGO = 'data:image/svg+xml,%3Csvg xmlns=%22http://www.w3.org/2000/svg%22/%3E';
let redocBundle: string | undefined;
const loadRedoc = () => (redocBundle ??= readFileSync(REDOC_BUNDLE, 'utf8').replaceAll('https://cdn.redoc.ly/redoc/logo-mini.svg', LOCAL_LOGO));

/** Belt and braces: the browser itself refuses anything not served by this app. */
const CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; font-src 'self' data:";

// No validatorUrl: Swagger UI would otherwise send the spec to validator.swagger.io.
const SWAGGER_INIT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null,
  persistAuthorization: true, presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'
});`;

const page = (title: string, head: string, body: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">${head}</head>
<body style="margin:0">${body}</body></html>`;

const SWAGGER_HTML = page(
  'ops-db-api · Swagger UI',
  '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">',
  '<div id="swagger-ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script><script src="/docs/assets/swagger-init.js"></script>',
);
const REDOC_HTML = page(
  'ops-db-api · ReDoc',
  '',
  '<redoc spec-url="/openapi.json" disable-search="false"></redoc><script src="/redoc/assets/redoc.standalone.js"></script>',
);

export function docsRoutes(router: Router, openapi: () => object): void {
  let cached: object | undefined;
  router.get('/openapi.json', (ctx) => {
    ctx.body = cached ??= openapi();
  });
  router.get('/docs', (ctx) => {
    ctx.set('Content-Security-Policy', CSP);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = SWAGGER_HTML;
  });
  router.get('/redoc', (ctx) => {
    ctx.set('Content-Security-Policy', CSP);
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = REDOC_HTML;
  });
  for (const [path, asset] of Object.entries(ASSETS)) {
    router.get(path, (ctx) => {
      ctx.type = asset.type;
      ctx.set('Cache-Control', 'public, max-age=86400');
      if (asset.file) ctx.body = createReadStream(asset.file);
      else ctx.body = path.startsWith('/redoc/') ? loadRedoc() : SWAGGER_INIT;
    });
  }
}
