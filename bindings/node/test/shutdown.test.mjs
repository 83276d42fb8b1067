// The process exits after close() with live watches, keepers, lock and
// registration listeners, an observer and a subscription.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Server } from './helpers.mjs'

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')

describe('shutdown', () => {
  let server
  before(async () => {
    server = await new Server('kvd').start()
  })
  after(async () => {
    await server?.stop()
  })

  it('lets the process exit after close(), cleanly, every time', async () => {
    // Teardown races with the addon's threads: several runs make a crash
    // there (SIGABRT from a panic in a finalizer) show up.
    for (let run = 0; run < 5; run++) await closeAndExit()
  })

  async function closeAndExit() {
    const child = spawn(process.execPath, [path.join(fixtures, 'closer.mjs'), server.endpoint], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    // A process kept alive by a pending native promise never exits: the
    // guard turns that hang into a failure instead of a stuck suite.
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000)
    const [code, signal] = await once(child, 'exit')
    clearTimeout(guard)
    assert.equal(signal, null, `the process ended by ${signal}: killed because close() left it running, or crashed`)
    assert.equal(code, 0)
    assert.equal(out.trim(), 'closed')
  }
})
