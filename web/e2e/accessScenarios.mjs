// The browser scenarios of access control (issue 8). Each starts a server of its own in auth mode (its own
// secret, port and database: t.ownServer) and mints tokens with `tandem token`, as an application's backend
// would; the server's own REST helpers use an admin token for every document. Each ends with a screenshot.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { editorText, openUrl, peopleIn, screenshot, typeInto, waitForStatus, waitForText, waitUntil, WAIT_MS } from './pages.mjs';

const ALICE = ['Alice', '#d1495b'];
const BOB = ['Bob', '#2f5bd3'];
const CAROL = ['Carol', '#1b8a5a'];

function authServer(t) {
  return t.ownServer('auth', { TANDEM_AUTH_SECRET: randomBytes(24).toString('hex') });
}

/** A link as the server's share links are made: the document's address with `?token=`. */
function link(server, id, token) {
  return `${server.base}/d/${id}?token=${encodeURIComponent(token)}`;
}

async function serverHas(server, id, expected) {
  await waitUntil(`the server's text to be ${JSON.stringify(expected)}`, async () => (await server.docText(id)) === expected);
}

/** Fails unless `page` shows the full-page message headed `heading`. */
async function shows(page, heading, timeout = WAIT_MS) {
  await page.getByRole('heading', { name: heading }).waitFor({ timeout });
}

/**
 * A read-only page must not even try to write: the server answers a refused write with permission-denied, which
 * y-websocket logs as a warning.
 */
function assertNoRefusedWrites(t, label) {
  const denied = t.watch.warnings.filter((w) => w.startsWith(`[${label}]`) && /Permission denied/i.test(w));
  if (denied.length) throw new Error(`the ${label} page sent writes the server refused: ${denied.join('; ')}`);
}

/** The address bar must not keep a token (it would end up in the history, and in every copied address). */
function assertNoTokenInAddress(page, who) {
  if (new URL(page.url()).searchParams.has('token')) throw new Error(`${who}'s address still carries the token: ${page.url()}`);
}

async function viewLink(t) {
  const server = await authServer(t);
  const doc = await server.createDoc('Read along');
  const edit = await server.mint({ doc: doc.id, scope: 'write' });
  const view = await server.mint({ doc: doc.id, scope: 'read' });
  const a = await openUrl(await t.context(...ALICE), t.watch, link(server, doc.id, edit), 'alice');
  await typeInto(a, 'Minutes of the meeting.');
  await serverHas(server, doc.id, 'Minutes of the meeting.');

  const b = await openUrl(await t.context(...BOB), t.watch, link(server, doc.id, view), 'bob');
  assertNoTokenInAddress(b, 'Bob');
  await waitForText(b, "the text in Bob's view", (text) => text === 'Minutes of the meeting.');
  await b.locator('.view-only', { hasText: 'View only' }).waitFor();
  if (!(await b.getByLabel('Document title').evaluate((el) => el.readOnly))) throw new Error("Bob's title field can be edited");
  if ((await b.getByRole('button', { name: /^(Share|Copy link)$/ }).count()) !== 0) throw new Error('a view link offers Share or Copy link');
  if ((await a.locator('.view-only').count()) !== 0) throw new Error('an edit link shows "View only"');

  // What Alice types, and her cursor, reach Bob's page live.
  await typeInto(a, ' Alice keeps writing.');
  await waitForText(b, "Alice's new words in Bob's view", (text) => text === 'Minutes of the meeting. Alice keeps writing.');
  await b.locator('.cm-ySelectionInfo', { hasText: 'Alice' }).waitFor({ state: 'visible' });

  // Bob types, deletes and breaks a line: his page does not change...
  await typeInto(b, ' Bob was here.');
  await b.keyboard.press('Backspace');
  await b.keyboard.press('Enter');
  const bobSees = await editorText(b);
  if (bobSees !== 'Minutes of the meeting. Alice keeps writing.') throw new Error(`Bob's read-only page changed: ${JSON.stringify(bobSees)}`);
  // ...but his caret moved, and shows in Alice's page.
  await a.locator('.cm-ySelectionInfo', { hasText: 'Bob' }).waitFor({ state: 'visible' });
  await waitUntil("Bob listed in Alice's page", async () => (await peopleIn(a)).includes('Bob'));

  // Alice writes once more. When that has reached Bob, anything his page sent before it has reached the server
  // too (one socket, in order): the server has Alice's text only.
  await typeInto(a, ' The end.');
  const expected = 'Minutes of the meeting. Alice keeps writing. The end.';
  await waitForText(b, "Alice's last words in Bob's view", (text) => text === expected);
  await serverHas(server, doc.id, expected);
  assertNoRefusedWrites(t, 'bob');
  await screenshot(t.shots, 'view-link', [['alice', a], ['bob-view', b]]);
}

async function editLink(t) {
  const server = await authServer(t);
  const doc = await server.createDoc('Written together');
  const admin = await server.mint({ doc: doc.id, scope: 'admin' });
  const edit = await server.mint({ doc: doc.id, scope: 'write', name: 'Dana' });
  const a = await openUrl(await t.context(...ALICE), t.watch, link(server, doc.id, admin), 'alice');
  // Dana never picked a name: the editor takes the one her token gives.
  const d = await openUrl(await t.context(null, '#0e7c86'), t.watch, link(server, doc.id, edit), 'dana');
  assertNoTokenInAddress(d, 'Dana');
  await waitUntil("Dana's page to call her Dana", async () => (await d.locator('.name-button').textContent()) === 'You: Dana');
  await waitUntil("Dana listed in Alice's page", async () => (await peopleIn(a)).includes('Dana'));
  if ((await d.locator('.view-only').count()) !== 0) throw new Error('an edit link shows "View only"');
  if ((await d.getByRole('button', { name: /^(Share|Copy link)$/ }).count()) !== 0) throw new Error('an edit link offers Share or Copy link');

  await typeInto(d, 'Dana writes the first line.');
  await waitForText(a, "Dana's text in Alice's page", (text) => text === 'Dana writes the first line.');
  await serverHas(server, doc.id, 'Dana writes the first line.');

  // The token was kept: the document's plain address opens it again, still editable.
  await d.goto(`${server.base}/d/${doc.id}`);
  await waitForStatus(d, 'connected');
  await typeInto(d, ' And the second.');
  await waitForText(a, "Dana's return in Alice's page", (text) => text === 'Dana writes the first line. And the second.');

  // A new link replaces the kept token: after a view link, the plain address is view only too. This browser
  // keeps a copy of the document from when it could edit; as a viewer it must not send that copy back.
  const view = await server.mint({ doc: doc.id, scope: 'read', name: 'Dana' });
  await d.goto(link(server, doc.id, view));
  await d.locator('.view-only').waitFor();
  await d.goto(`${server.base}/d/${doc.id}`);
  await waitForStatus(d, 'connected');
  await d.locator('.view-only').waitFor();
  await waitForText(d, 'the text in the view', (text) => text === 'Dana writes the first line. And the second.');
  assertNoRefusedWrites(t, 'dana');

  // A link that does not work does not push out the kept token.
  t.watch.allow(/status of 401/);
  await d.goto(link(server, doc.id, 'not-a-token'));
  await shows(d, 'This link is not valid');
  await d.goto(`${server.base}/d/${doc.id}`);
  await waitForStatus(d, 'connected');
  await d.locator('.view-only').waitFor();
  await screenshot(t.shots, 'edit-link', [['alice', a], ['dana', d]]);
}

async function shareLinks(t) {
  const server = await authServer(t);
  const context = await t.context(...ALICE, { permissions: ['clipboard-read', 'clipboard-write'] });
  // Alice, an admin of every document, starts at the list and makes a document there.
  const a = await context.newPage();
  t.watch.attach(a, 'alice');
  await a.goto(`${server.base}/?token=${encodeURIComponent(server.adminToken)}`);
  await a.getByRole('heading', { name: 'Documents' }).waitFor();
  await a.getByLabel('Title of a new document').fill('Shared plans');
  await a.getByRole('button', { name: 'New document' }).click();
  await a.waitForURL(/\/d\/[^/?]+$/);
  await waitForStatus(a, 'connected');
  await typeInto(a, 'Plans to share.');
  const id = new URL(a.url()).pathname.split('/').pop();
  if ((await a.getByRole('button', { name: 'Copy link' }).count()) !== 0) throw new Error('token mode still offers "Copy link"');

  await a.getByRole('button', { name: 'Share' }).click();
  const panel = a.locator('#share-panel');
  const copied = {};
  for (const [scope, button] of [['read', 'Copy view link'], ['write', 'Copy edit link']]) {
    await panel.getByRole('button', { name: button }).click();
    copied[scope] = await waitUntil(`the ${scope} link on the clipboard`, async () => {
      const text = await a.evaluate(() => navigator.clipboard.readText());
      return text.startsWith(`${server.base}/d/${id}?token=`) && text !== copied.read ? text : false;
    });
    const shown = await panel.locator(`.share-row[data-scope="${scope}"] .share-url`).inputValue();
    if (shown !== copied[scope]) throw new Error(`the ${scope} link copied is not the one shown: ${shown}`);
  }

  // Bob opens the view link and Carol the edit link, each in a browser of their own.
  const b = await openUrl(await t.context(...BOB), t.watch, copied.read, 'bob');
  const c = await openUrl(await t.context(...CAROL), t.watch, copied.write, 'carol');
  await b.locator('.view-only').waitFor();
  if ((await c.locator('.view-only').count()) !== 0) throw new Error('the edit link opened view only');
  await typeInto(c, ' Carol adds hers.');
  await waitForText(a, "Carol's words in Alice's page", (text) => text === 'Plans to share. Carol adds hers.');
  await waitForText(b, "Carol's words in Bob's view", (text) => text === 'Plans to share. Carol adds hers.');
  await typeInto(b, ' Bob cannot.');
  const bobSees = await editorText(b);
  if (bobSees !== 'Plans to share. Carol adds hers.') throw new Error(`the view link could type: ${JSON.stringify(bobSees)}`);
  await serverHas(server, id, 'Plans to share. Carol adds hers.');
  assertNoRefusedWrites(t, 'bob');
  await screenshot(t.shots, 'share', [['alice-admin', a], ['bob-view', b], ['carol-edit', c]]);
}

async function refusedLinks(t) {
  const server = await authServer(t);
  const doc = await server.createDoc('Not for long');
  const other = await server.createDoc('Another document');
  // Chromium reports every refused fetch on the console; here they are the point.
  t.watch.allow(/status of 401/);
  t.watch.allow(/status of 403/);
  t.watch.allow(/net::ERR_FAILED/);

  // An open socket whose token expires: the server closes it with 4401, and the page says the link expired
  // instead of reconnecting. REST is cut off for this page, so only the socket can tell it.
  const short = await server.mint({ doc: doc.id, scope: 'write', ttl: '5s' });
  let sockets = 0;
  const live = await openUrl(await t.context(...BOB), t.watch, link(server, doc.id, short), 'live', {
    onPage: (page) => page.on('websocket', () => (sockets += 1)),
  });
  await live.route('**/api/**', (route) => route.abort());
  await live.evaluate(() => {
    window.closeCodes = [];
    window.tandem.provider.on('connection-close', (event) => window.closeCodes.push(event ? event.code : null));
  });
  await shows(live, 'This link has expired', 15_000);
  const codes = await live.evaluate(() => window.closeCodes);
  if (codes.join() !== '4401') throw new Error(`the socket closed with ${JSON.stringify(codes)}, not once with 4401`);
  // y-websocket tries again within a few hundred milliseconds (200 ms after a synced connection) if it is going
  // to: give it a second, while waiting for REST to refuse the token too (its check allows a second of leeway).
  await Promise.all([
    sleep(1000),
    waitUntil('the server to refuse the expired token', async () => {
      const res = await fetch(`${server.base}/api/access`, { headers: { authorization: `Bearer ${short}` } });
      return res.status === 401;
    }),
  ]);
  if (sockets !== 1) throw new Error(`the page opened ${sockets} sockets; it should not reconnect after 4401`);

  // The same link, opened now that it has expired, in a browser that never saw it.
  const fresh = await t.context(...CAROL);
  const open = async (url, label) => {
    const page = await fresh.newPage();
    t.watch.attach(page, label);
    await page.goto(url);
    return page;
  };
  const late = await open(link(server, doc.id, short), 'late');
  await shows(late, 'This link has expired');
  assertNoTokenInAddress(late, 'The expired page');

  // A token whose signature was tampered with, and one for another document.
  const parts = short.split('.');
  const forged = [parts[0], parts[1], parts[2].split('').reverse().join('')].join('.');
  const bad = await open(link(server, doc.id, forged), 'forged');
  await shows(bad, 'This link is not valid');
  const elsewhere = await open(link(server, doc.id, await server.mint({ doc: other.id, scope: 'write' })), 'other-doc');
  await shows(elsewhere, 'This link does not give access to this document');
  await screenshot(t.shots, 'refused', [['expired-open', live], ['expired-link', late], ['forged', bad], ['other-doc', elsewhere]]);
}

async function authList(t) {
  const server = await authServer(t);
  const kept = await server.createDoc('Listed for admins');
  t.watch.allow(/status of 401/);
  t.watch.allow(/status of 403/);

  // No token: a page that says what is needed, not a spinner or a raw error.
  const context = await t.context(...CAROL);
  const page = await context.newPage();
  t.watch.attach(page, 'list');
  await page.goto(`${server.base}/`);
  await shows(page, 'This server needs an access token');
  const body = await page.locator('.message').innerText();
  if (!body.includes('Open a link you were given, or ask the person who runs it for one.')) throw new Error(`the page says: ${body}`);
  await page.screenshot({ path: t.shots.path('auth-list-none.png') });

  // An admin token for every document lists, as in open mode, and is kept for the next visit.
  await page.goto(`${server.base}/?token=${encodeURIComponent(server.adminToken)}`);
  const row = page.locator(`.doc-row[data-id="${kept.id}"]`);
  await row.waitFor();
  assertNoTokenInAddress(page, 'The list');
  // The next visit, without ?token=, uses the kept token: it lists a document made since, renames and deletes it.
  const made = await server.createDoc('Made elsewhere');
  await page.goto(`${server.base}/`);
  await row.waitFor();
  const madeRow = page.locator(`.doc-row[data-id="${made.id}"]`);
  await madeRow.waitFor();
  await madeRow.getByRole('button', { name: /^Rename/ }).click();
  await page.keyboard.press('Control+A');
  await page.keyboard.type('Renamed by an admin');
  await page.keyboard.press('Enter');
  await waitUntil('the rename to reach the server', async () => (await server.api('GET', `/api/docs/${made.id}`)).title === 'Renamed by an admin');
  await madeRow.getByRole('button', { name: /^Delete/ }).click();
  await madeRow.locator('.button-danger').click();
  await madeRow.waitFor({ state: 'detached' });
  await waitUntil('the document to be gone from the server', async () => {
    const res = await fetch(`${server.base}/api/docs/${made.id}`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    return res.status === 404;
  });

  // A token for one document at the list's address: the same page, with a way on to that document.
  const single = await t.context(...BOB);
  const other = await single.newPage();
  t.watch.attach(other, 'one-document');
  await other.goto(`${server.base}/?token=${encodeURIComponent(await server.mint({ doc: kept.id, scope: 'write' }))}`);
  await shows(other, 'This server needs an access token');
  await other.getByRole('link', { name: 'Open the document this link is for' }).click();
  await waitForStatus(other, 'connected');
  await screenshot(t.shots, 'auth-list', [['admin', page], ['one-doc', other]]);
}

export const ACCESS_SCENARIOS = [
  ['view-link', 'auth: a view link shows the text and cursors live, cannot type, and its own cursor shows to others', viewLink],
  ['edit-link', "auth: an edit link types and the other page follows; the token's name, kept token, a new link replaces it", editLink],
  ['share', 'auth: an admin makes view and edit links with Share; they work in other browsers', shareLinks],
  ['refused', 'auth: expired (also on an open socket: 4401, no reconnect), forged and other-document links get clear pages', refusedLinks],
  ['auth-list', 'auth: the list without a token says one is needed; with an admin token it lists, renames, deletes', authList],
];
