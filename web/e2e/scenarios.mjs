// The browser scenarios. Each gets a fresh `t` (see run.mjs): the running server, contexts with a display name,
// a console watch and a screenshot folder. Each ends by saving a screenshot of its end state.
import { setTimeout as sleep } from 'node:timers/promises';
import { ACCESS_SCENARIOS } from './accessScenarios.mjs';
import { HISTORY_SCENARIOS } from './historyScenarios.mjs';
import { TLS_SCENARIOS } from './tlsScenarios.mjs';
import { editorText, openDoc, screenshot, status, typeInto, waitForStatus, waitForText, waitUntil } from './pages.mjs';

const ALICE = ['Alice', '#d1495b'];
const BOB = ['Bob', '#2f5bd3'];

async function bothEqual(a, b, expected) {
  return waitUntil(`both pages to show ${JSON.stringify(expected)}`, async () => {
    const [x, y] = await Promise.all([editorText(a), editorText(b)]);
    return x === expected && y === expected;
  });
}

async function serverHas(t, id, expected) {
  await waitUntil(`the server's text to be ${JSON.stringify(expected)}`, async () => (await t.server.docText(id)) === expected);
}

async function typing(t) {
  const doc = await t.server.createDoc('Typing together');
  const a = await openDoc(await t.context(...ALICE), t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');

  await typeInto(a, 'Hello from Alice.');
  await waitForText(b, "Alice's text in Bob's page", (text) => text === 'Hello from Alice.');

  // Both type at once, at opposite ends of the text.
  await Promise.all([typeInto(a, ' Alice again, at the end.', 'end'), typeInto(b, 'Bob first. ', 'start')]);
  const expected = 'Bob first. Hello from Alice. Alice again, at the end.';
  await bothEqual(a, b, expected);
  await serverHas(t, doc.id, expected);

  // A rename made elsewhere reaches the open pages; a rename typed in one reaches the server.
  await t.server.renameDoc(doc.id, 'Typing together, renamed');
  await waitUntil("the new title in Bob's page", async () => (await b.getByLabel('Document title').inputValue()) === 'Typing together, renamed', 10_000);
  const title = a.getByLabel('Document title');
  await title.click();
  await title.fill('Typed by Alice');
  await title.press('Enter');
  await waitUntil('the title typed by Alice on the server', async () => (await t.server.api('GET', `/api/docs/${doc.id}`)).title === 'Typed by Alice');
  await waitUntil("Alice's title in Bob's page", async () => (await b.getByLabel('Document title').inputValue()) === 'Typed by Alice', 10_000);
  await screenshot(t.shots, 'typing', [['alice', a], ['bob', b]]);
}

async function remoteCursor(t) {
  const doc = await t.server.createDoc('Team notes');
  const a = await openDoc(await t.context(...ALICE), t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');
  await typeInto(a, 'Launch plan');
  await a.keyboard.press('Enter');
  await a.keyboard.press('Enter');
  await a.keyboard.type('Goals for this week:\n- Ship the shared editor\n- Write the docs\n- Invite the team', { delay: 5 });
  await waitForText(b, "the notes in Bob's page", (text) => text.endsWith('Invite the team'));

  // Bob puts his caret after "docs"; Alice selects "Ship the shared editor".
  await b.locator('.cm-line', { hasText: 'Write the docs' }).click();
  await b.keyboard.press('End');
  await a.keyboard.press('Control+Home');
  for (let i = 0; i < 3; i++) await a.keyboard.press('ArrowDown');
  await a.keyboard.press('Home');
  for (let i = 0; i < 2; i++) await a.keyboard.press('ArrowRight');
  await a.keyboard.press('Shift+End');

  const label = b.locator('.cm-ySelectionInfo', { hasText: 'Alice' });
  await label.waitFor({ state: 'visible' });
  const look = await label.evaluate((el) => {
    const style = getComputedStyle(el);
    return { opacity: style.opacity, background: style.backgroundColor, caret: getComputedStyle(el.parentElement).borderLeftColor };
  });
  if (look.opacity !== '1') throw new Error(`Alice's label is not shown (opacity ${look.opacity})`);
  if (look.background !== 'rgb(209, 73, 91)') throw new Error(`Alice's label is not in her colour: ${look.background}`);
  await waitUntil("Alice's selection highlighted in Bob's page", async () => {
    const selected = await b.locator('.cm-ySelection').allTextContents();
    return selected.join('') === 'Ship the shared editor';
  });
  // Both people are listed on both pages.
  await waitUntil('Alice and Bob listed in Bob\'s page', async () => {
    const names = await b.locator('.people .person-name').allTextContents();
    return names.includes('Alice') && names.includes('Bob');
  });
  await waitUntil('Bob listed in Alice\'s page', async () => (await a.locator('.people .person-name').allTextContents()).includes('Bob'));
  await a.locator('.cm-ySelectionInfo', { hasText: 'Bob' }).waitFor({ state: 'visible' });
  await screenshot(t.shots, 'remote-cursor', [['alice', a], ['bob', b]]);

}

async function leave(t) {
  const doc = await t.server.createDoc('Coming and going');
  const a = await openDoc(await t.context(...ALICE), t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');
  await typeInto(a, 'Alice was here.');
  await b.locator('.cm-ySelectionInfo', { hasText: 'Alice' }).waitFor({ state: 'visible' });
  await a.locator('.cm-ySelectionInfo', { hasText: 'Bob' }).waitFor({ state: 'attached' }).catch(() => undefined);

  // Alice closes her tab without saying goodbye (browsers send no awareness removal on close): the server
  // clears what her connection announced, so her name and cursor leave Bob's page at once, not after the
  // 30 s sweep of stale states.
  await a.close();
  await waitUntil("Alice's name and cursor gone from Bob's page", async () => {
    const names = await b.locator('.people .person-name').allTextContents();
    return !names.includes('Alice') && (await b.locator('.cm-ySelectionInfo').count()) === 0;
  }, 10_000);
  const names = await b.locator('.people .person-name').allTextContents();
  if (names.join() !== 'Bob') throw new Error(`Bob's page lists ${JSON.stringify(names)}`);
  await screenshot(t.shots, 'leave', [['bob', b]]);
}

async function docList(t) {
  const context = await t.context('Carol', '#1b8a5a');
  const page = await context.newPage();
  t.watch.attach(page, 'list');
  await page.goto(`${t.base}/`);
  await page.getByRole('heading', { name: 'Documents' }).waitFor();

  // Created and renamed elsewhere: both show up by themselves within a few seconds.
  const made = await t.server.createDoc('Made through the API');
  const row = page.locator(`.doc-row[data-id="${made.id}"]`);
  await waitUntil('the new document in the list', async () => (await row.locator('.doc-title').textContent({ timeout: 500 })) === 'Made through the API', 8000);
  await t.server.renameDoc(made.id, 'Renamed elsewhere');
  await waitUntil('the rename in the list', async () => (await row.locator('.doc-title').textContent({ timeout: 500 })) === 'Renamed elsewhere', 8000);

  // Rename from the list, with the keyboard.
  await row.getByRole('button', { name: /^Rename/ }).click();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Renamed in the list');
  await page.keyboard.press('Enter');
  await waitUntil('the rename to reach the server', async () => (await t.server.api('GET', `/api/docs/${made.id}`)).title === 'Renamed in the list');

  // Delete from the list, confirming.
  await row.getByRole('button', { name: /^Delete/ }).click();
  await row.locator('.button-danger').click();
  await row.waitFor({ state: 'detached' });
  await waitUntil('the document to be gone from the server', async () => {
    const res = await fetch(`${t.base}/api/docs/${made.id}`);
    return res.status === 404;
  });

  // More than one page of documents: "Show more" reads the next one.
  for (let i = 0; i < 55; i++) await t.server.createDoc(`Paging ${String(i).padStart(2, '0')}`);
  const total = (await t.server.api('GET', '/api/docs?limit=500')).docs.length;
  await page.reload();
  await page.locator('.doc-row').first().waitFor();
  await waitUntil('the first page of 50', async () => (await page.locator('.doc-row').count()) === 50);
  await page.getByRole('button', { name: 'Show more' }).click();
  await waitUntil(`all ${total} documents`, async () => (await page.locator('.doc-row').count()) === total);

  // Create from the list: it opens the new document.
  await page.getByLabel('Title of a new document').fill('Meeting notes');
  await page.keyboard.press('Enter');
  await page.waitForURL(/\/d\/[0-9a-f-]{36}$/);
  await waitUntil('the title in the editor', async () => (await page.getByLabel('Document title').inputValue()) === 'Meeting notes');
  await waitForStatus(page, 'connected');
  await page.goBack();
  await waitUntil('the new document on top of the list', async () => (await page.locator('.doc-row .doc-title').first().textContent()) === 'Meeting notes');
  await page.locator('.doc-row').first().scrollIntoViewIfNeeded();
  await screenshot(t.shots, 'doc-list', [['list', page]]);
}

async function missing(t) {
  const context = await t.context('Dana', '#8e44ad');
  const page = await context.newPage();
  t.watch.attach(page, 'missing');
  // Chromium reports every 4xx fetch on the console; these three are the point of this scenario.
  t.watch.allow(/status of 404/);
  t.watch.allow(/status of 400/);
  t.watch.allow(/WebSocket connection to '.*' failed/);

  await page.goto(`${t.base}/d/00000000-0000-4000-8000-000000000000`);
  await page.getByRole('heading', { name: 'Document not found' }).waitFor();
  await page.screenshot({ path: t.shots.path('missing-unknown.png') });
  const malformed = await context.newPage();
  t.watch.attach(malformed, 'malformed');
  await malformed.goto(`${t.base}/d/not-a-document`);
  await malformed.getByRole('heading', { name: 'Not a document link' }).waitFor();

  const doc = await t.server.createDoc('Short-lived');
  const open = await openDoc(context, t.watch, t.base, doc.id, 'deleted');
  await t.server.api('DELETE', `/api/docs/${doc.id}`);
  await open.getByRole('heading', { name: 'Document deleted' }).waitFor({ timeout: 15_000 });
  await screenshot(t.shots, 'missing', [['unknown', page], ['malformed', malformed], ['deleted', open]]);
}

async function restart(t) {
  const doc = await t.server.createDoc('Survives a restart');
  const a = await openDoc(await t.context(...ALICE), t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');
  await typeInto(a, 'Written before the restart.');
  await bothEqual(a, b, 'Written before the restart.');

  await t.stopServer();
  await Promise.all([waitForStatus(a, 'reconnecting'), waitForStatus(b, 'reconnecting')]);
  await screenshot(t.shots, 'restart-down', [['alice', a], ['bob', b]]);
  await t.startServer();
  await Promise.all([waitForStatus(a, 'connected'), waitForStatus(b, 'connected')]);
  await bothEqual(a, b, 'Written before the restart.');
  await serverHas(t, doc.id, 'Written before the restart.');

  await typeInto(b, ' And after it.');
  await bothEqual(a, b, 'Written before the restart. And after it.');
  await screenshot(t.shots, 'restart', [['alice', a], ['bob', b]]);
}

async function offline(t) {
  const doc = await t.server.createDoc('Offline and back');
  const aliceContext = await t.context(...ALICE);
  const a = await openDoc(aliceContext, t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');
  await typeInto(a, 'Shared start.');
  await bothEqual(a, b, 'Shared start.');

  t.watch.beginOutage();
  await aliceContext.setOffline(true);
  await waitUntil('Alice to notice she is offline', async () => (await status(a)) !== 'connected');
  await typeInto(a, ' Alice, offline.');
  await waitForStatus(a, 'offline');
  await typeInto(b, 'Bob, online. ', 'start');
  await waitForText(b, "Bob's own edit", (text) => text === 'Bob, online. Shared start.');
  await sleep(1000);
  const cutOff = await editorText(a);
  if (cutOff !== 'Shared start. Alice, offline.') throw new Error(`Alice's page changed while offline: ${JSON.stringify(cutOff)}`);
  await screenshot(t.shots, 'offline-during', [['alice', a], ['bob', b]]);

  await aliceContext.setOffline(false);
  t.watch.endOutage();
  const expected = 'Bob, online. Shared start. Alice, offline.';
  await bothEqual(a, b, expected);
  await Promise.all([waitForStatus(a, 'connected'), waitForStatus(b, 'connected')]);
  await serverHas(t, doc.id, expected);
  await screenshot(t.shots, 'offline', [['alice', a], ['bob', b]]);
}

async function closedWhileDown(t) {
  const doc = await t.server.createDoc('Kept in the browser');
  const profileDir = t.workPath('profile-alice');
  let aliceProfile = await t.profile(profileDir, ...ALICE);
  const a = await openDoc(aliceProfile, t.watch, t.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, t.base, doc.id, 'bob');
  await typeInto(a, 'Saved while online.');
  await bothEqual(a, b, 'Saved while online.');

  await t.stopServer();
  await waitForStatus(a, 'reconnecting');
  await typeInto(a, ' Typed while the server was down.');
  await waitForStatus(a, 'offline');
  // Wait until IndexedDB has committed the edits (a later read-write transaction on the same store completes
  // only after the earlier ones), then close the whole browser of that profile.
  await a.evaluate(
    (name) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open(name);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction('updates', 'readwrite');
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    `tandem-doc-${doc.id}`,
  );
  await t.closeProfile(aliceProfile);

  await t.startServer();
  await waitForStatus(b, 'connected');
  const before = await editorText(b);
  if (before !== 'Saved while online.') throw new Error(`Bob saw text nobody could have sent: ${JSON.stringify(before)}`);

  aliceProfile = await t.profile(profileDir, ...ALICE);
  const again = await openDoc(aliceProfile, t.watch, t.base, doc.id, 'alice-reopened');
  const expected = 'Saved while online. Typed while the server was down.';
  await bothEqual(again, b, expected);
  await serverHas(t, doc.id, expected);
  await screenshot(t.shots, 'reopened', [['alice', again], ['bob', b]]);
}

async function phone(t) {
  const doc = await t.server.createDoc('A title long enough to need the whole width of a small phone');
  const context = await t.context('Erin', '#0e7c86', { viewport: { width: 375, height: 720 }, isMobile: true, hasTouch: true });
  const list = await context.newPage();
  t.watch.attach(list, 'phone-list');
  await list.goto(`${t.base}/`);
  await list.locator(`.doc-row[data-id="${doc.id}"]`).waitFor();
  const editor = await openDoc(context, t.watch, t.base, doc.id, 'phone-editor');
  await typeInto(editor, 'Typed on a phone: the lines wrap to the width of the screen instead of running off it.');
  for (const [name, page] of [['list', list], ['editor', editor]]) {
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`the ${name} page is ${overflow} px wider than a phone screen`);
  }
  await screenshot(t.shots, 'phone', [['list', list], ['editor', editor]]);
}

export const SCENARIOS = [
  ['typing', 'two pages on one document: typing appears in the other, concurrent typing converges', typing],
  ['cursor', 'the remote cursor and selection of Alice, with her name label, show in Bob\'s page', remoteCursor],
  ['leave', 'a page that closes leaves the others\' presence list and its cursor goes at once', leave],
  ['list', 'the document list shows new documents and renames made elsewhere; rename, delete, paging', docList],
  ['missing', 'an unknown, malformed or deleted document shows a clear message', missing],
  ['restart', 'the server restarts: pages show "reconnecting", then reconnect by themselves with content intact', restart],
  ['offline', 'one page goes offline, both edit, it comes back: both show all edits', offline],
  ['phone', 'the list and the editor fit a phone screen', phone],
  ['reopen', 'edits typed with the server down survive closing the browser and reach the other page later', closedWhileDown],
  ...ACCESS_SCENARIOS,
  ...HISTORY_SCENARIOS,
  ...TLS_SCENARIOS,
];
