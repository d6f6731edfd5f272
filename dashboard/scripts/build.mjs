// npm run build  -> writes dist/ (index.html, app.js, app.css), prints sizes, fails over budget
// npm run check  -> builds into a temp dir, fails if it differs from dist/ or is over budget
//
// dist/ is committed: the collector embeds these three files (include_bytes!) and serves them at
// /dashboard, /dashboard/app.js and /dashboard/app.css, so building the Rust binary needs no Node.
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
// gzip level 9, bytes. uPlot alone is ~20 KB of app.js.
const BUDGET = { 'index.html': 2048, 'app.js': 40960, 'app.css': 6144 };
const outdir = check ? mkdtempSync(join(tmpdir(), 'footfall-dashboard-')) : join(root, 'dist');
mkdirSync(outdir, { recursive: true });

const common = { bundle: true, minify: true, legalComments: 'none', charset: 'ascii', logLevel: 'warning', absWorkingDir: root };
// uPlot is MIT-licensed: its notice travels with the bundle (esbuild would drop its header comment)
const uplot = JSON.parse(readFileSync(join(root, 'node_modules/uplot/package.json'), 'utf8'));
const licence = readFileSync(join(root, 'node_modules/uplot/LICENSE'), 'utf8').trim().replace(/\*\//g, '* /');
const banner = {
  js: `/*! footfall dashboard. Includes uPlot ${uplot.version} (${uplot.homepage.replace(/#.*/, '')}), under this licence:\n\n${licence}\n*/`,
  css: `/*! Includes the stylesheet of uPlot ${uplot.version}, MIT License, ${licence.split('\n').find(l => l.startsWith('Copyright'))}; full notice in app.js */`
};

let failed = false;
try {
  await build({ ...common, entryPoints: [join(root, 'src/app.js')], outfile: join(outdir, 'app.js'), format: 'iife', target: 'es2020', banner: { js: banner.js } });
  await build({ ...common, entryPoints: [join(root, 'src/app.css')], outfile: join(outdir, 'app.css'), target: ['chrome100', 'firefox100', 'safari15'], banner: { css: banner.css } });
  // index.html: comments and indentation dropped, nothing else changed
  const html = readFileSync(join(root, 'src/index.html'), 'utf8')
    .replace(/<!--[\s\S]*?-->/g, '').split('\n').map(l => l.trim()).filter(Boolean).join('\n') + '\n';
  writeFileSync(join(outdir, 'index.html'), html);

  let total = 0;
  for (const out of Object.keys(BUDGET)) {
    const code = readFileSync(join(outdir, out));
    const gz = gzipSync(code, { level: 9 }).length;
    total += gz;
    const over = gz > BUDGET[out];
    console.log(`${out}: ${code.length} B, ${gz} B gzip (budget ${BUDGET[out]})${over ? '  OVER BUDGET' : ''}`);
    if (over) failed = true;
    // everything is same-origin: no absolute URLs to load from (fonts, CDNs, images)
    const text = code.toString('latin1');
    const foreign = out == 'app.js' ? [] : text.match(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s"')]*/gi) || [];
    if (/url\(\s*['"]?(?!data:)/i.test(text) || foreign.length) {
      console.error(`${out} references another origin: ${foreign.join(' ') || 'url(...)'}`);
      failed = true;
    }
    if (check) {
      const committed = join(root, 'dist', out);
      if (!existsSync(committed) || !readFileSync(committed).equals(code)) {
        console.error(`dist/${out} is stale: run "npm run build" and commit the result`);
        failed = true;
      }
    }
  }
  console.log(`total: ${total} B gzip`);
} finally {
  if (check) rmSync(outdir, { recursive: true, force: true });
}
if (failed) process.exit(1);
