// What people and bots send, through the stock y-websocket provider, measured where it
// leaves the client: fast typing with a moving cursor, a large paste, a day of offline
// edits sent on reconnect, and a fast bot. The server's message-rate limit must hold none
// of them back (the Rust side reads tandem_throttled_total); a watcher checks that every
// edit arrives. Prints {"activities": {name: {frames, peak_per_second, seconds}}, "text_length"}.
//
// usage: node everyday_rates.mjs ws://127.0.0.1:PORT/ws <doc id>
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

const [base, docId] = process.argv.slice(2)
if (!base || !docId) {
  console.error('usage: node everyday_rates.mjs <ws base url> <doc id>')
  process.exit(2)
}

setTimeout(() => fail('timed out'), 90_000)

function fail (why) {
  console.error(`everyday rates failed: ${why}`)
  process.exit(1)
}

// The user's frames, timestamped as the provider sends them.
const sent = []
class CountingSocket extends WebSocket {
  send (data, ...rest) {
    sent.push(performance.now())
    return super.send(data, ...rest)
  }
}

function join (name, Socket) {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(base, docId, doc, { WebSocketPolyfill: Socket, disableBc: true })
  provider.awareness.setLocalStateField('user', { name, color: '#3366ff' })
  return { doc, provider, text: doc.getText('content') }
}

async function until (what, check, patience = 30_000) {
  const start = Date.now()
  while (!check()) {
    if (Date.now() - start > patience) fail(`waiting until ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/// Frames sent from `from` on, and the most in any one second.
function measure (from) {
  const times = sent.filter(t => t >= from)
  let peak = 0
  for (let i = 0, j = 0; i < times.length; i++) {
    while (times[i] - times[j] >= 1000) j++
    peak = Math.max(peak, i - j + 1)
  }
  return { frames: times.length, peak_per_second: peak, seconds: (performance.now() - from) / 1000 }
}

const user = join('user', CountingSocket)
const watcher = join('watcher', WebSocket)
await until('both synced', () => user.provider.synced && watcher.provider.synced)
const activities = {}
const caughtUp = () => watcher.text.length === user.text.length

// Fast typing: 30 keystrokes a second (a fast typist makes 10), the cursor moving with each.
let start = performance.now()
for (let i = 0; i < 150; i++) {
  user.text.insert(user.text.length, 'k')
  user.provider.awareness.setLocalStateField('cursor', { index: user.text.length })
  await sleep(1000 / 30)
}
await until('the typing arrives', caughtUp)
activities.typing = measure(start)

// A paste of a megabyte: one transaction.
start = performance.now()
user.text.insert(user.text.length, 'p'.repeat(1 << 20))
await until('the paste arrives', caughtUp)
activities.paste = measure(start)

// A day offline: 20,000 edits (a working day of typing, each its own transaction), sent on
// reconnect.
user.provider.disconnect()
for (let i = 0; i < 20_000; i++) user.text.insert(user.text.length, 'o')
start = performance.now()
user.provider.connect()
await until('the offline day arrives', caughtUp)
activities.offline_day = measure(start)

// A fast bot: 800 updates a second for eight seconds, one transaction each (an assistant
// streaming text, a script filling a document).
start = performance.now()
for (let s = 0; s < 8; s++) {
  const second = performance.now()
  for (let i = 0; i < 800; i++) {
    user.text.insert(user.text.length, 'b')
    if (i % 100 === 99) await sleep(Math.max(0, (second + (i + 1) * 1.25) - performance.now()))
  }
  await sleep(Math.max(0, second + 1000 - performance.now()))
}
await until('the bot\'s text arrives', caughtUp)
activities.fast_bot = measure(start)

if (user.text.toString() !== watcher.text.toString()) fail('the texts differ')
console.log(JSON.stringify({ activities, text_length: user.text.length }))
user.provider.destroy()
watcher.provider.destroy()
process.exit(0)
