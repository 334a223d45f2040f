// Two stock y-websocket providers edit one tandem document: concurrent edits converge,
// awareness travels both ways and is cleared by the server when a socket dies, and
// offline edits merge on reconnect. Prints {"text": ...} on success; exits 1 on failure.
//
// usage: node two_providers.mjs ws://127.0.0.1:PORT/ws <doc id>
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [base, docId] = process.argv.slice(2)
if (!base || !docId) {
  console.error('usage: node two_providers.mjs <ws base url> <doc id>')
  process.exit(2)
}

const deadline = setTimeout(() => fail('timed out'), 30_000)

function fail (why) {
  console.error(`interop failed: ${why}`)
  process.exit(1)
}

function join (name) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(base, docId, doc, { WebSocketPolyfill: WebSocket, disableBc: true })
  provider.awareness.setLocalStateField('user', { name, color: '#3366ff' })
  return { name, doc, provider, text: doc.getText('content') }
}

async function until (what, check) {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > 10_000) fail(`waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

const sees = (peer, name) =>
  [...peer.provider.awareness.getStates().values()].some(state => state.user?.name === name)

const a = join('A')
const b = join('B')
await until('both synced', () => a.provider.synced && b.provider.synced)

// Concurrent edits at both ends.
for (let i = 0; i < 20; i++) {
  a.text.insert(0, `a${String(i).padStart(2, '0')};`.slice(0, 4))
  b.text.insert(b.text.length, `b${String(i).padStart(2, '0')};`.slice(0, 4))
}
await until('edits converge', () =>
  a.text.toString() === b.text.toString() && a.text.length === 20 * 2 * 4)

// Awareness both ways.
await until('A sees B and B sees A', () => sees(a, 'B') && sees(b, 'A'))

// A goes offline and edits; B edits; A comes back: both have both.
a.provider.disconnect()
a.text.insert(0, 'A-offline;')
b.text.insert(0, 'B-online;')
a.provider.connect()
await until('offline edits merge', () =>
  a.text.toString() === b.text.toString() && a.text.toString().includes('A-offline;') &&
  a.text.toString().includes('B-online;'))

// B's socket dies without a goodbye: the server removes B's awareness for A.
b.provider.shouldConnect = false
b.provider.ws.terminate()
await until('the server clears B\'s awareness', () => !sees(a, 'B'))

console.log(JSON.stringify({ text: a.text.toString() }))
clearTimeout(deadline)
a.provider.destroy()
b.provider.destroy()
process.exit(0)
