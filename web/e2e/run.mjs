#!/usr/bin/env node
// Runs the browser scenarios against the real tandem binary in headless Chromium.
//
//   node web/e2e/run.mjs --server-bin target/debug/tandem --work /tmp/tandem-e2e --screenshots target/e2e
//        [--chromium /usr/bin/chromium] [--only typing,cursor] [--readme-shot docs/screenshot.png]
//
// The runner starts tandem itself (TANDEM_LISTEN on a free loopback port, DATABASE_URL a SQLite file in the work
// folder) because some scenarios stop and restart it. It exits non-zero if any scenario fails.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConsoleWatch, launchBrowser, launchProfile, setIdentity } from './browser.mjs';
import { SCENARIOS } from './scenarios.mjs';
import { TandemServer } from './server.mjs';

const VIEWPORT = { width: 900, height: 640 };

function findChromium() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ['chromium', 'chromium-browser']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch {
      // try the next name
    }
  }
  throw new Error('no chromium found: install Debian\'s package "chromium" or pass --chromium');
}

const { values: args } = parseArgs({
  options: {
    'server-bin': { type: 'string' },
    work: { type: 'string' },
    screenshots: { type: 'string', default: 'target/e2e' },
    chromium: { type: 'string' },
    only: { type: 'string' },
    'readme-shot': { type: 'string' },
    // A certificate and key (PEM) for the scenario that serves over TLS; it is skipped without them.
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});
if (!args['server-bin'] || !args.work) {
  console.error('usage: run.mjs --server-bin <tandem binary> --work <dir> [--screenshots <dir>] [--chromium <path>] [--only a,b]');
  process.exit(2);
}

const serverBin = resolve(args['server-bin']);
const work = resolve(args.work);
const shotsDir = resolve(args.screenshots);
const executablePath = args.chromium ?? findChromium();
const only = args.only ? new Set(args.only.split(',')) : null;

// The work folder is wiped before each run, so only a folder this runner made (it leaves a marker) or an empty one
// is accepted: a mistyped --work must not delete someone's files.
const MARKER = '.tandem-e2e-work';
const existing = await readdir(work).catch(() => null);
if (existing && existing.length > 0 && !existing.includes(MARKER)) {
  console.error(`refusing to wipe ${work}: it is not empty and was not made by this runner`);
  process.exit(2);
}
await rm(work, { recursive: true, force: true });
await mkdir(work, { recursive: true });
await writeFile(join(work, MARKER), 'made by web/e2e/run.mjs; wiped at the start of each run\n');
await mkdir(shotsDir, { recursive: true });

const server = await TandemServer.create(serverBin, work);
const browser = await launchBrowser(executablePath);

/** Screenshots go to the folder given; several pages are also combined into one picture side by side. */
const shots = {
  path: (name) => join(shotsDir, name),
  async combine(name, pictures) {
    const page = await browser.newPage({ viewport: { width: 400, height: 200 } });
    const cells = pictures
      .map(([label, png]) => `<figure><img src="data:image/png;base64,${png}" alt=""><figcaption>${label}</figcaption></figure>`)
      .join('');
    await page.setContent(
      `<style>body{margin:0;padding:24px;display:flex;gap:24px;width:max-content;background:#dfe3ea;font:600 15px system-ui,sans-serif}` +
        `figure{margin:0}img{display:block;border-radius:8px;box-shadow:0 2px 10px #0002}figcaption{margin-top:8px;color:#3b4350}</style>${cells}`,
    );
    await page.screenshot({ path: join(shotsDir, name), fullPage: true });
    await page.close();
  },
};

/** The pages under test must be the bundle in web/dist: a binary built before the last `npm run build` is not. */
async function checkServedBundle(server) {
  const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist');
  for (const file of ['index.html', 'assets/app.js', 'assets/app.css']) {
    const onDisk = await readFile(join(dist, file));
    const res = await fetch(`${server.base}/${file}`);
    const served = Buffer.from(await res.arrayBuffer());
    if (!res.ok || !served.equals(onDisk)) {
      throw new Error(`tandem serves a different /${file} than web/dist has (status ${res.status}): rebuild the binary after npm run build`);
    }
  }
}

const started = Date.now();
const results = [];
try {
  await server.start();
  await checkServedBundle(server);
  for (const [key, title, scenario] of SCENARIOS) {
    if (only && !only.has(key)) continue;
    const watch = new ConsoleWatch();
    const contexts = [];
    const profiles = new Set();
    /** Servers the scenario started for itself; stopped when it ends. */
    const ownServers = [];
    const t = {
      server,
      base: server.base,
      shots,
      watch,
      workPath: (name) => join(work, name),
      tls: args['tls-cert'] && args['tls-key'] ? { cert: resolve(args['tls-cert']), key: resolve(args['tls-key']) } : null,
      async context(name, color, options = {}) {
        const context = await browser.newContext({ viewport: VIEWPORT, ...options });
        await setIdentity(context, name, color);
        contexts.push(context);
        return context;
      },
      async profile(dir, name, color) {
        const context = await launchProfile(executablePath, dir, { viewport: VIEWPORT });
        await setIdentity(context, name, color);
        profiles.add(context);
        return context;
      },
      async closeProfile(context) {
        profiles.delete(context);
        await context.close();
      },
      async stopServer() {
        watch.beginOutage();
        await server.stop();
      },
      async startServer() {
        await server.start();
        watch.endOutage();
      },
      /** Starts a server of the scenario's own (own port, database and log) with `env` added, e.g. an auth secret. */
      async ownServer(name, env) {
        const own = await TandemServer.create(serverBin, work, { name: `${key}-${name}`, env });
        ownServers.push(own);
        await own.start();
        return own;
      },
    };
    const begun = Date.now();
    let error = null;
    try {
      await scenario(t);
      watch.check();
    } catch (err) {
      error = err;
    }
    for (const context of [...contexts, ...profiles]) await context.close().catch(() => undefined);
    for (const own of ownServers) await own.stop().catch(() => undefined);
    if (!server.running) await server.start().catch(() => undefined);
    const seconds = ((Date.now() - begun) / 1000).toFixed(1);
    results.push({ key, ok: !error });
    if (error) {
      console.log(`FAIL ${key}: ${title} (${seconds} s)\n     ${String(error.stack ?? error).replace(/\n/g, '\n     ')}`);
      for (const shown of [server, ...ownServers]) {
        console.log(`     ${shown.name} server log (last lines):\n${(await shown.logTail(25)).replace(/^/gm, '       ')}`);
      }
    } else {
      console.log(`ok   ${key}: ${title} (${seconds} s)`);
    }
    for (const warning of new Set(watch.warnings)) {
      console.log(`     console warning: ${warning}`);
    }
  }
} finally {
  await browser.close().catch(() => undefined);
  await server.stop();
}

// The picture of two people editing in the README is the end state of the cursor scenario.
if (args['readme-shot'] && results.some((r) => r.key === 'cursor' && r.ok)) {
  await copyFile(join(shotsDir, 'remote-cursor.png'), resolve(args['readme-shot']));
}

const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed;
const total = ((Date.now() - started) / 1000).toFixed(1);
await writeFile(join(shotsDir, 'summary.txt'), results.map((r) => `${r.ok ? 'ok  ' : 'FAIL'} ${r.key}`).join('\n') + '\n');
const verdict = failed === 0 ? `all ${passed} scenarios passed` : `${failed} of ${results.length} scenarios FAILED`;
console.log(`browser e2e: ${verdict} in ${total} s; screenshots in ${shotsDir}`);
process.exit(failed === 0 && results.length > 0 ? 0 : 1);
