// Starts and stops the real tandem binary for the browser tests. The port is chosen once, so pages keep
// reconnecting to the same address across a restart, and the database file stays in the work folder.
// A scenario may start a server of its own (say in auth mode, with TANDEM_AUTH_SECRET in `env`), with its own
// port, database and log, and mint tokens for it with the binary's `token` subcommand.
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export class TandemServer {
  /**
   * @param {{ bin: string, work: string, port: number, name?: string, env?: Record<string, string> }} opts
   * `name` names its database and log in the work folder (the shared server's are tandem.db and server.log);
   * `env` is added to the server's environment.
   */
  constructor({ bin, work, port, name, env = {} }) {
    this.bin = bin;
    this.work = work;
    this.port = port;
    this.name = name ?? 'tandem';
    this.env = env;
    this.dbPath = join(work, `${this.name}.db`);
    this.logPath = join(work, name ? `${name}.log` : 'server.log');
    this.child = null;
    this.starts = 0;
    /** In auth mode: the token the REST helpers below send (admin of every document). */
    this.adminToken = null;
  }

  static async create(bin, work, { name, env } = {}) {
    const server = new TandemServer({ bin, work, port: await freePort(), name, env });
    // An empty file is a valid empty SQLite database, so the server does not need to create it.
    await writeFile(server.dbPath, '');
    if (server.authMode) server.adminToken = await server.mint({ doc: '*', scope: 'admin', ttl: '1h' });
    return server;
  }

  get authMode() {
    return Boolean(this.env.TANDEM_AUTH_SECRET);
  }

  /**
   * The environment the server (and its `token` subcommand, which reads the same settings) runs with. Auth settings
   * come from `env` only, so an open-mode server stays open whatever the shell running the tests exports.
   */
  get serverEnv() {
    const inherited = { ...process.env };
    delete inherited.TANDEM_AUTH_SECRET;
    delete inherited.TANDEM_AUTH_PUBLIC_KEY;
    return {
      ...inherited,
      TANDEM_LISTEN: `127.0.0.1:${this.port}`,
      DATABASE_URL: `sqlite://${this.dbPath}`,
      RUST_LOG: process.env.RUST_LOG ?? 'tandem=debug,tower_http=info',
      ...this.env,
    };
  }

  /** A token signed with this server's secret: `tandem token --doc ID|'*' --scope S --ttl T [--name N]`. */
  async mint({ doc, scope, ttl = '1h', name }) {
    const args = ['token', '--doc', doc, '--scope', scope, '--ttl', ttl];
    if (name) args.push('--name', name);
    const { stdout } = await run(this.bin, args, { env: this.serverEnv });
    const token = stdout.trim();
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(token)) throw new Error(`tandem token printed no token: ${JSON.stringify(stdout)}`);
    return token;
  }

  get base() {
    const scheme = this.env.TANDEM_TLS_CERT ? 'https' : 'http';
    return `${scheme}://127.0.0.1:${this.port}`;
  }

  get running() {
    return this.child !== null;
  }

  async start() {
    if (this.child) throw new Error('tandem is already running');
    this.starts += 1;
    const log = createWriteStream(this.logPath, { flags: 'a' });
    log.write(`\n=== start #${this.starts} on port ${this.port} ===\n`);
    const child = spawn(this.bin, [], {
      env: this.serverEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    let exited = null;
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      if (this.child === child) this.child = null;
    });
    this.child = child;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`tandem exited during start (${JSON.stringify(exited)}); see ${this.logPath}`);
      try {
        const res = await fetch(`${this.base}/readyz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    await this.stop();
    throw new Error(`tandem did not become ready within 30 s; see ${this.logPath}`);
  }

  /** Stops the server the way an operator would (SIGTERM, so it flushes), killing it if it hangs. */
  async stop() {
    const child = this.child;
    if (!child) return;
    const done = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await done;
    clearTimeout(timer);
    this.child = null;
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async logTail(lines = 40) {
    try {
      const text = await readFile(this.logPath, 'utf8');
      return text.split('\n').slice(-lines).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  // REST helpers: the tests use the public API the same way any other client would. In auth mode they send
  // the admin token unless told another.
  async api(method, path, body, { token = this.adminToken } = {}) {
    const headers = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
    const type = res.headers.get('content-type') ?? '';
    if (res.status === 204 || text === '') return null;
    return type.includes('application/json') ? JSON.parse(text) : text;
  }

  createDoc(title) {
    return this.api('POST', '/api/docs', { title });
  }

  renameDoc(id, title) {
    return this.api('PATCH', `/api/docs/${id}`, { title });
  }

  docText(id) {
    return this.api('GET', `/api/docs/${id}/text`);
  }
}
