// npm run build  -> writes dist/, prints gzip sizes, fails if footfall.js > 4096 B gzip (level 9)
// npm run check  -> builds into a temp dir, fails if it differs from dist/ or is over budget
import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const BUDGET = { 'footfall.js': 4096, 'footfall-ports.js': 2048 };
const entries = { 'footfall.js': 'src/footfall.js', 'footfall-ports.js': 'src/ports.js' };
const outdir = check ? mkdtempSync(join(tmpdir(), 'footfall-')) : join(root, 'dist');

let failed = false;
try {
  for (const [out, src] of Object.entries(entries)) {
    await build({
      entryPoints: [join(root, src)], outfile: join(outdir, out), bundle: true, minify: true,
      format: 'iife', target: 'es2020', legalComments: 'none', charset: 'ascii', logLevel: 'warning'
    });
    const code = readFileSync(join(outdir, out));
    const gz = gzipSync(code, { level: 9 }).length;
    const over = gz > BUDGET[out];
    console.log(`${out}: ${code.length} B, ${gz} B gzip (budget ${BUDGET[out]})${over ? '  OVER BUDGET' : ''}`);
    if (over) failed = true;
    if (check) {
      const committed = join(root, 'dist', out);
      if (!existsSync(committed) || !readFileSync(committed).equals(code)) {
        console.error(`dist/${out} is stale: run "npm run build" and commit the result`);
        failed = true;
      }
    }
  }
} finally {
  if (check) rmSync(outdir, { recursive: true, force: true });
}
if (failed) process.exit(1);
