// What a test does with the editor page: open it, type, read what it shows, wait for a status.
import { setTimeout as sleep } from 'node:timers/promises';

export const WAIT_MS = 20_000;

/** Polls `probe` until it returns a truthy value; fails with `what` and the last value seen. */
export async function waitUntil(what, probe, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      last = `error: ${err.message}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await sleep(100);
  }
}

/** Opens /d/{id} in a new page of `context` and waits until the editor is live. */
export async function openDoc(context, watch, base, id, label, options = {}) {
  return openUrl(context, watch, `${base}/d/${id}`, label, options);
}

/**
 * Opens `url` (a document's address, or a link with `?token=`) in a new page of `context` and waits until the
 * editor is live. `onPage` sees the page before it loads (to listen for its sockets, say).
 */
export async function openUrl(context, watch, url, label, { waitConnected = true, onPage } = {}) {
  const page = await context.newPage();
  watch.attach(page, label);
  onPage?.(page);
  await page.goto(url);
  await page.locator('.cm-content').waitFor({ state: 'visible', timeout: WAIT_MS });
  if (waitConnected) await waitForStatus(page, 'connected');
  return page;
}

/** The names in a page's list of people present. */
export function peopleIn(page) {
  return page.locator('.people .person-name').allTextContents();
}

/** The text the editor shows right now. */
export function editorText(page) {
  return page.evaluate(() => window.tandem.view.state.doc.toString());
}

export function status(page) {
  return page.locator('.status').getAttribute('data-status');
}

export async function waitForStatus(page, wanted, timeout = WAIT_MS) {
  let seen = null;
  try {
    await waitUntil(`status "${wanted}"`, async () => (seen = await status(page)) === wanted, timeout);
  } catch (err) {
    throw new Error(`${err.message}; the page says "${seen}"`);
  }
}

export async function waitForText(page, what, predicate, timeout = WAIT_MS) {
  return waitUntil(what, async () => {
    const text = await editorText(page);
    return predicate(text) ? text || true : false;
  }, timeout);
}

/** Puts the caret at the end (or start) of the document and types like a person. */
export async function typeInto(page, text, where = 'end') {
  await page.locator('.cm-content').click();
  await page.keyboard.press(where === 'end' ? 'Control+End' : 'Control+Home');
  await page.keyboard.type(text, { delay: 15 });
}

/** Saves a screenshot of each page, and one picture with all of them side by side. */
export async function screenshot(shots, name, pages) {
  const pictures = [];
  for (const [label, page] of pages) {
    const path = shots.path(`${name}-${label}.png`);
    const png = await page.screenshot({ path });
    pictures.push([label, png.toString('base64')]);
  }
  if (pages.length > 1) await shots.combine(`${name}.png`, pictures);
}
