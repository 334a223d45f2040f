// The browser scenarios of version history (issue 12): the History panel, naming a version, the preview marked
// against the text now, and a restore that every open editor follows live. Each starts a server of its own that
// keeps a version after a pause of one second (--version-after-idle, as TANDEM_VERSION_AFTER_IDLE), so that an
// automatic version needs no minute's wait.
import { randomBytes } from 'node:crypto';
import { editorText, openDoc, openUrl, screenshot, typeInto, waitForText, waitUntil } from './pages.mjs';

const ALICE = ['Alice', '#d1495b'];
const BOB = ['Bob', '#2f5bd3'];

const IDLE = { TANDEM_VERSION_AFTER_IDLE: '1s' };

async function versionsOf(server, id) {
  return (await server.api('GET', `/api/docs/${id}/versions?limit=500`)).versions;
}

async function bothEqual(a, b, expected) {
  return waitUntil(`both pages to show ${JSON.stringify(expected)}`, async () => {
    const [x, y] = await Promise.all([editorText(a), editorText(b)]);
    return x === expected && y === expected;
  });
}

async function serverHas(server, id, expected) {
  await waitUntil(`the server's text to be ${JSON.stringify(expected)}`, async () => (await server.docText(id)) === expected);
}

/** Opens the History panel of `page` and waits for its list (or its "no versions yet"). */
async function openHistory(page) {
  await page.getByRole('button', { name: 'History', exact: true }).click();
  const panel = page.locator('#history-panel');
  await panel.waitFor({ state: 'visible' });
  await waitUntil('the list of versions', async () => (await panel.locator('.version-row').count()) > 0 || (await panel.locator('.loading').isVisible()) === false);
  return panel;
}

/** The texts of the marks in a preview: what was added since the version, and what removed since. */
async function marks(preview) {
  const added = await preview.locator('.diff-view ins.diff-added').allTextContents();
  const removed = await preview.locator('.diff-view del.diff-removed').allTextContents();
  return { added, removed };
}

async function history(t) {
  const server = await t.ownServer('history', IDLE);
  const doc = await server.createDoc('Plans with a history');
  const a = await openDoc(await t.context(...ALICE), t.watch, server.base, doc.id, 'alice');
  const b = await openDoc(await t.context(...BOB), t.watch, server.base, doc.id, 'bob');
  // Set on Bob's page now: still there at the end if his page followed the restore without a reload.
  await b.evaluate(() => {
    window.notReloaded = true;
  });

  // Alice writes, then pauses: after a second the server keeps a version by itself, naming her as its editor.
  const first = 'Hello world. First draft of the plan.';
  await typeInto(a, first);
  await waitForText(b, "Alice's text in Bob's page", (text) => text === first);
  const auto = await waitUntil('a version kept after the pause', async () => (await versionsOf(server, doc.id)).find((v) => v.reason === 'auto'));
  if (!auto.editors.includes('Alice')) throw new Error(`the automatic version names ${JSON.stringify(auto.editors)} as its editors, not Alice`);
  const autoText = await server.api('GET', `/api/docs/${doc.id}/versions/${auto.id}/text`);
  if (autoText !== first) throw new Error(`the automatic version holds ${JSON.stringify(autoText)}`);

  // She opens the history: the version is listed with her name; she names the text as it is now.
  const panel = await openHistory(a);
  const autoRow = panel.locator(`.version-row[data-id="${auto.id}"]`);
  await autoRow.waitFor();
  const autoEditors = await autoRow.locator('.version-editors').textContent();
  if (!autoEditors.includes('Alice')) throw new Error(`the listed version says ${JSON.stringify(autoEditors)}`);
  const exact = await autoRow.locator('time').getAttribute('title');
  if (!exact || !/\d:\d\d:\d\d/.test(exact)) throw new Error(`the version's time has no exact time on hover: ${JSON.stringify(exact)}`);
  await panel.getByRole('button', { name: 'Name this version' }).click();
  await panel.getByLabel('Name this version').fill('Draft one');
  await panel.getByLabel('Name this version').press('Enter');
  const top = panel.locator('.version-row').first();
  await waitUntil('the named version on top of the list', async () => (await top.locator('.version-label').textContent({ timeout: 500 })) === 'Draft one');
  // Held by its id: versions kept later go on top of it.
  const namedId = await top.getAttribute('data-id');
  const named = panel.locator(`.version-row[data-id="${namedId}"]`);
  const kept = (await versionsOf(server, doc.id)).find((v) => v.id === namedId);
  if (!kept || kept.label !== 'Draft one' || kept.reason !== 'request') throw new Error(`the server has the named version as ${JSON.stringify(kept)}`);

  // Alice goes on: she takes out the greeting and adds a sentence. Bob sees it.
  await a.locator('.cm-content').click();
  await a.keyboard.press('Control+Home');
  for (let i = 0; i < 'Hello world. '.length; i++) await a.keyboard.press('Shift+ArrowRight');
  await a.keyboard.press('Backspace');
  await a.keyboard.press('Control+End');
  await a.keyboard.type(' Second thoughts.', { delay: 15 });
  const later = 'First draft of the plan. Second thoughts.';
  await bothEqual(a, b, later);

  // The preview of "Draft one" shows its text in place of the editor, marked against the text now.
  await named.locator('.version-item').click();
  const preview = a.locator('.version-preview');
  await preview.waitFor();
  await waitUntil('the marks in the preview', async () => {
    const { added, removed } = await marks(preview);
    return added.join('').trim() === 'Second thoughts.' && removed.join('').trim() === 'Hello world.';
  });
  const shown = await preview.locator('.diff-view').textContent();
  if (shown !== 'Hello world. First draft of the plan. Second thoughts.') throw new Error(`the preview shows ${JSON.stringify(shown)}`);
  const look = await preview.locator('.diff-view del').first().evaluate((el) => getComputedStyle(el).textDecorationLine);
  if (!look.includes('line-through')) throw new Error(`removed text is not struck through: ${look}`);
  await preview.locator('.diff-legend').waitFor();
  if (await a.locator('.editor-host').isVisible()) throw new Error('the editor still shows beside the preview');
  // The preview cannot be edited: typing into it changes neither it nor the document.
  if ((await preview.locator('.diff-view').getAttribute('aria-readonly')) !== 'true') throw new Error('the preview is not marked read-only');
  await preview.locator('.diff-view').click();
  await a.keyboard.type('typed into the preview');
  if ((await preview.locator('.diff-view').textContent()) !== shown) throw new Error('typing changed the preview');
  if ((await editorText(b)) !== later) throw new Error('typing into the preview reached the document');
  // "Show changes" off: the version's own text, unmarked.
  await preview.getByLabel('Show changes').uncheck();
  await waitUntil('the plain text of the version', async () => (await preview.locator('.diff-view').textContent()) === first && (await preview.locator('.diff-view ins, .diff-view del').count()) === 0);
  await preview.getByLabel('Show changes').check();
  await screenshot(t.shots, 'history-preview', [['alice', a]]);

  // Restore: the server changes the live document, and both editors follow.
  await preview.getByRole('button', { name: 'Restore this version' }).click();
  await panel.locator('.history-note', { hasText: 'Restored. The earlier text is kept as a version.' }).waitFor();
  await bothEqual(a, b, first);
  await serverHas(server, doc.id, first);
  if (!(await b.evaluate(() => window.notReloaded === true))) throw new Error("Bob's page was reloaded");
  if (!(await a.locator('.editor-host').isVisible())) throw new Error('the editor is not back after the restore');

  // The text from before the restore is kept as a version, shown on top as "Before restore".
  const beforeRow = panel.locator('.version-row[data-reason="restore"]');
  await beforeRow.waitFor();
  await beforeRow.locator('.version-tag', { hasText: 'Before restore' }).waitFor();
  const before = (await versionsOf(server, doc.id)).find((v) => v.reason === 'restore');
  if (!before || (await beforeRow.getAttribute('data-id')) !== before.id) throw new Error(`the server's restore version: ${JSON.stringify(before)}`);
  const beforeText = await server.api('GET', `/api/docs/${doc.id}/versions/${before.id}/text`);
  if (beforeText !== later) throw new Error(`the version before the restore holds ${JSON.stringify(beforeText)}`);

  // Bob opens the history too: the same versions, the newest "Before restore".
  const bobPanel = await openHistory(b);
  await bobPanel.locator(`.version-row[data-id="${before.id}"] .version-tag`, { hasText: 'Before restore' }).waitFor();
  await bobPanel.locator('.version-label', { hasText: 'Draft one' }).waitFor();
  await screenshot(t.shots, 'history', [['alice', a], ['bob', b]]);

  // An admin (everyone, in open mode) may delete a version: Bob deletes the automatic one.
  await bobPanel.locator(`.version-row[data-id="${auto.id}"] .version-item`).click();
  const bobPreview = b.locator('.version-preview');
  await bobPreview.getByRole('button', { name: 'Delete', exact: true }).click();
  await bobPreview.getByRole('button', { name: 'Delete version' }).click();
  await bobPanel.locator(`.version-row[data-id="${auto.id}"]`).waitFor({ state: 'detached' });
  await waitUntil('the version gone from the server', async () => !(await versionsOf(server, doc.id)).some((v) => v.id === auto.id));
  await panel.locator(`.version-row[data-id="${auto.id}"]`).waitFor({ state: 'detached', timeout: 15_000 });
}

/** In auth mode a viewer reads the history but may not name, restore or delete; an editor may not delete. */
async function historyAccess(t) {
  const server = await t.ownServer('history-auth', { TANDEM_AUTH_SECRET: randomBytes(24).toString('hex'), ...IDLE });
  const doc = await server.createDoc('History for some');
  const link = async (scope) => `${server.base}/d/${doc.id}?token=${encodeURIComponent(await server.mint({ doc: doc.id, scope }))}`;
  const a = await openUrl(await t.context(...ALICE), t.watch, await link('write'), 'alice-edit');
  await typeInto(a, 'Only editors restore.');
  await serverHas(server, doc.id, 'Only editors restore.');
  const made = await server.api('POST', `/api/docs/${doc.id}/versions`, { label: 'Kept by the admin' });

  const b = await openUrl(await t.context(...BOB), t.watch, await link('read'), 'bob-view');
  const viewer = await openHistory(b);
  await viewer.locator(`.version-row[data-id="${made.id}"] .version-label`, { hasText: 'Kept by the admin' }).waitFor();
  if ((await viewer.getByRole('button', { name: 'Name this version' }).count()) !== 0) throw new Error('a viewer is offered "Name this version"');
  await viewer.locator(`.version-row[data-id="${made.id}"] .version-item`).click();
  const viewerPreview = b.locator('.version-preview');
  await viewerPreview.locator('.diff-view', { hasText: 'Only editors restore.' }).waitFor();
  if ((await viewerPreview.getByRole('button', { name: /^(Restore this version|Delete)$/ }).count()) !== 0) throw new Error('a viewer is offered Restore or Delete');

  const editor = await openHistory(a);
  await editor.getByRole('button', { name: 'Name this version' }).waitFor();
  await editor.locator(`.version-row[data-id="${made.id}"] .version-item`).click();
  const editorPreview = a.locator('.version-preview');
  await editorPreview.getByRole('button', { name: 'Restore this version' }).waitFor();
  await editorPreview.locator('.diff-view', { hasText: 'Only editors restore.' }).waitFor();
  if ((await editorPreview.getByRole('button', { name: 'Delete', exact: true }).count()) !== 0) throw new Error('an editor is offered Delete');
  await screenshot(t.shots, 'history-access', [['editor', a], ['viewer', b]]);
}

/** More versions than one page: "Show older" reads the next. */
async function historyPaging(t) {
  const server = await t.ownServer('history-paging', IDLE);
  const doc = await server.createDoc('A long history');
  for (let i = 0; i < 55; i++) await server.api('POST', `/api/docs/${doc.id}/versions`, { label: `Step ${String(i).padStart(2, '0')}` });
  const a = await openDoc(await t.context(...ALICE), t.watch, server.base, doc.id, 'alice');
  const panel = await openHistory(a);
  await waitUntil('the first page of 50', async () => (await panel.locator('.version-row').count()) === 50);
  const labels = await panel.locator('.version-label').allTextContents();
  if (labels[0] !== 'Step 54' || labels[49] !== 'Step 05') throw new Error(`the first page runs from ${labels[0]} to ${labels[49]}`);
  await panel.getByRole('button', { name: 'Show older' }).click();
  await waitUntil('all 55 versions', async () => (await panel.locator('.version-row').count()) === 55);
  if (await panel.getByRole('button', { name: 'Show older' }).isVisible()) throw new Error('"Show older" is still offered at the oldest version');
  const oldest = await panel.locator('.version-label').last().textContent();
  if (oldest !== 'Step 00') throw new Error(`the oldest version listed is ${oldest}`);
  await screenshot(t.shots, 'history-paging', [['alice', a]]);
}

export const HISTORY_SCENARIOS = [
  ['history', 'version history: kept after a pause and by name, previewed with its changes marked, restored in every open editor', history],
  ['history-access', 'version history in auth mode: a viewer reads it, an editor may also restore, only an admin deletes', historyAccess],
  ['history-paging', 'version history: more versions than one page, "Show older" reads the rest', historyPaging],
];
