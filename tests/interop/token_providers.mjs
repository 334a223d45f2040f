// Stock y-websocket providers against tandem with access control: tokens travel as
// `params: { token }`; a read-only provider syncs and shows its cursor but changes nothing;
// a provider whose token expires is closed with 4401, stops reconnecting, and carries on
// after the application sets a fresh token and calls connect(). Prints {"text": ...}.
//
// usage: node token_providers.mjs ws://127.0.0.1:PORT/ws <doc id>
//   env TANDEM_WRITE_TOKEN, TANDEM_READ_TOKEN, TANDEM_SHORT_TOKEN (expires in a few seconds),
//       TANDEM_FRESH_TOKEN
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [base, docId] = process.argv.slice(2)
const env = (name) => process.env[name] || fail(`${name} is not set`)
const deadline = setTimeout(() => fail('timed out'), 40_000)

function fail (why) {
  console.error(`interop failed: ${why}`)
  process.exit(1)
}

function join (name, token) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(base, docId, doc, {
    WebSocketPolyfill: WebSocket, disableBc: true, params: { token }
  })
  provider.awareness.setLocalStateField('user', { name, color: '#3366ff' })
  return { name, doc, provider, text: doc.getText('content') }
}

async function until (what, check, ms = 10_000) {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > ms) fail(`waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

const sees = (peer, name) =>
  [...peer.provider.awareness.getStates().values()].some(state => state.user?.name === name)

const writer = join('Writer', env('TANDEM_WRITE_TOKEN'))
const reader = join('Reader', env('TANDEM_READ_TOKEN'))
// Joins at once: its token lasts only a few seconds.
const expiring = join('Expiring', env('TANDEM_SHORT_TOKEN'))
let closeCode = null
expiring.provider.on('connection-close', (event) => { closeCode = closeCode ?? event?.code })
await until('all synced', () => writer.provider.synced && reader.provider.synced && expiring.provider.synced)

writer.text.insert(0, 'written;')
await until('the reader receives the edit', () => reader.text.toString() === 'written;')
await until('the writer sees the reader\'s cursor', () => sees(writer, 'Reader'))

// The reader types: its copy changes, nobody else's does, and it stays connected.
reader.text.insert(0, 'refused;')
writer.text.insert(writer.text.length, 'more;')
await until('the reader receives the next edit', () => reader.text.toString().includes('more;'))
if (writer.text.toString().includes('refused;')) fail('the read-only edit reached the writer')
if (!reader.provider.wsconnected) fail('the read-only provider was disconnected')

// A token that expires: the server closes with 4401 and the provider stops reconnecting.
await until('closed with 4401', () => closeCode === 4401, 15_000)
await new Promise(resolve => setTimeout(resolve, 1500))
if (expiring.provider.wsconnected || expiring.provider.wsconnecting) fail('it reconnected with an expired token')
// Edits made meanwhile are kept and sent once the application brings a fresh token.
expiring.text.insert(expiring.text.length, 'after refresh;')
expiring.provider.params.token = env('TANDEM_FRESH_TOKEN')
expiring.provider.connect()
await until('the refreshed edit reaches the writer', () => writer.text.toString().includes('after refresh;'))

console.log(JSON.stringify({ text: writer.text.toString(), close: closeCode }))
clearTimeout(deadline)
for (const peer of [writer, reader, expiring]) peer.provider.destroy()
process.exit(0)
