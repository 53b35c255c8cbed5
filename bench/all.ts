/**
 * npm run bench — every benchmark, then one table of figures and ratios
 * against their baselines, printed and written to docs/performance.md.
 * `npm run bench -- --summary` rebuilds the table from the last runs' figures.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ROOT, machine, writeSection, type Figure } from './support.js';

// `--summary`: only rebuild the table from the figures of the last runs.
for (const script of process.argv.includes('--summary') ? [] : ['bench:ingest', 'bench:sync', 'bench:settle']) {
  const r = spawnSync('npm', ['run', '--silent', script], { cwd: ROOT, stdio: 'inherit', env: process.env });
  if (r.status !== 0) {
    console.error(`${script} failed (exit ${r.status})`);
    process.exit(1);
  }
}
const figures = JSON.parse(readFileSync(`${ROOT}docs/performance.json`, 'utf8')) as Figure[];
const md = `## Summary (\`npm run bench\`)

${new Date().toISOString().slice(0, 10)}, ${machine()}. Each figure is measured in the same run as its baseline.

| benchmark | figure | value | baseline | ratio | target |
|---|---|---:|---:|---:|---|
${figures
  .map((f) => `| ${f.bench} | ${f.what} | ${f.value} ${f.unit} | ${f.baseline === null ? '—' : `${f.baseline} ${f.unit} (${f.baseline_what})`} | ${f.ratio ?? '—'} | ${f.target} |`)
  .join('\n')}
`;
console.log(md);
writeSection('summary', md);
