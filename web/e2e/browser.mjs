// Headless Chromium through playwright-core, pointed at the system's chromium binary (never a downloaded one),
// with a console watch on every page: any console error or uncaught exception fails the scenario, except
// network failures while the test has deliberately taken the server or the network away.
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Network failures that are expected while the server is down or a page is offline. */
const NETWORK_FAILURE = [
  /WebSocket connection to '.*' failed/,
  /Failed to load resource: net::ERR_(CONNECTION_REFUSED|INTERNET_DISCONNECTED|CONNECTION_RESET|EMPTY_RESPONSE|NETWORK_CHANGED|CONNECTION_CLOSED)/,
];

/** How long after the network returns a late failure report from the outage is still excused. */
const GRACE_MS = 4000;

export class ConsoleWatch {
  constructor() {
    this.errors = [];
    /** Console warnings do not fail a scenario, but the runner prints them. */
    this.warnings = [];
    this.outages = 0;
    this.outageEndedAt = 0;
    /** Extra messages a scenario expects (e.g. the 404 of an unknown document). */
    this.allowed = [];
  }

  beginOutage() {
    this.outages += 1;
  }

  endOutage() {
    this.outages = Math.max(0, this.outages - 1);
    this.outageEndedAt = Date.now();
  }

  allow(pattern) {
    this.allowed.push(pattern);
  }

  excused(text) {
    if (this.allowed.some((p) => p.test(text))) return true;
    const inOutage = this.outages > 0 || Date.now() - this.outageEndedAt < GRACE_MS;
    return inOutage && NETWORK_FAILURE.some((p) => p.test(text));
  }

  attach(page, label) {
    page.on('console', (msg) => {
      if (msg.type() === 'warning') this.warnings.push(`[${label}] ${msg.text()}`);
      if (msg.type() !== 'error') return;
      const text = msg.text();
      if (!this.excused(text)) this.errors.push(`[${label}] console error: ${text}`);
    });
    page.on('pageerror', (err) => {
      this.errors.push(`[${label}] uncaught: ${err.stack ?? err.message}`);
    });
  }

  check() {
    if (this.errors.length) {
      const list = this.errors.splice(0);
      throw new Error(`console errors in the pages:\n  ${list.join('\n  ')}`);
    }
  }
}

export async function launchBrowser(executablePath) {
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS });
}

export async function launchProfile(executablePath, userDataDir, options) {
  return chromium.launchPersistentContext(userDataDir, { executablePath, args: CHROMIUM_ARGS, ...options });
}

/**
 * Gives every page of `context` a fixed display name and colour, as if the visitor had picked them; a null name
 * leaves the name unpicked (so the editor takes the token's, or makes one up).
 */
export async function setIdentity(context, name, color) {
  await context.addInitScript(
    ([n, c]) => {
      if (n) localStorage.setItem('tandem.name', n);
      localStorage.setItem('tandem.color', c);
    },
    [name, color],
  );
}
