// The editor served over TLS (issue 9): tandem with --tls-cert and --tls-key (a self-signed certificate made by
// tests/browser.rs), the page over https and its socket over wss. The browser is told to accept that certificate
// (ignoreHTTPSErrors), as a test must; the runner's own requests trust it through NODE_EXTRA_CA_CERTS.
import { editorText, openDoc, screenshot, typeInto, waitUntil } from './pages.mjs';

async function https(t) {
  if (!t.tls) throw new Error('no certificate: run through tests/browser.rs, which makes one (--tls-cert, --tls-key)');
  const server = await t.ownServer('tls', { TANDEM_TLS_CERT: t.tls.cert, TANDEM_TLS_KEY: t.tls.key });
  if (!server.base.startsWith('https://')) throw new Error(`not served over TLS: ${server.base}`);
  const doc = await server.createDoc('Over TLS');
  const secure = { ignoreHTTPSErrors: true };
  const a = await openDoc(await t.context('Alice', '#d1495b', secure), t.watch, server.base, doc.id, 'alice');
  const b = await openDoc(await t.context('Bob', '#2f5bd3', secure), t.watch, server.base, doc.id, 'bob');
  const scheme = await a.evaluate(() => location.protocol);
  if (scheme !== 'https:') throw new Error(`the page is not on https: ${scheme}`);
  await typeInto(a, 'Typed over wss.');
  await waitUntil("Alice's text in Bob's page", async () => (await editorText(b)) === 'Typed over wss.');
  await waitUntil("the server's text", async () => (await server.docText(doc.id)) === 'Typed over wss.');
  await screenshot(t.shots, 'https', [['alice', a], ['bob', b]]);
}

export const TLS_SCENARIOS = [['https', 'the editor over https and wss', https]];
