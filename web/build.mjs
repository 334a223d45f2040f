// Builds the browser editor into dist/: index.html plus /assets/app.js and /assets/app.css.
//
// The output must be byte-identical from run to run (CI rebuilds it and diffs it against the committed copy),
// so file names carry no content hashes, nothing embeds a date, and the output folder is wiped first so no
// stale file survives.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
const assets = join(dist, 'assets');

await rm(dist, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/main.ts' },
  outdir: assets,
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020'],
  legalComments: 'none',
  charset: 'utf8',
  sourcemap: false,
  logLevel: 'warning',
});

await copyFile(join(here, 'src', 'index.html'), join(dist, 'index.html'));
await copyFile(join(here, 'src', 'icon.svg'), join(assets, 'icon.svg'));
