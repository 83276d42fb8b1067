// Locks (exclusion across two Node processes, fencing tokens, withLock,
// tryOnly, AbortSignal) and elections, against kvd and etcd 3.4.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { LockedError, AbortError, NotLeaderError } from '../lib/index.mjs'
import { kinds, startServer, unique } from './helpers.mjs'

const run = promisify(execFile)
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')

for (const kind of kinds()) {
  describe(`locks against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('excludes two Node processes from each other', async () => {
      const p = unique('excl')
      const rounds = 15
      const args = (i) => [path.join(fixtures, 'locker.mjs'), server.endpoint, `${p}lock`, `${p}counter`, String(rounds)]
      const [a, b] = await Promise.all([run(process.execPath, args(0)), run(process.execPath, args(1))])
      // An unprotected read-modify-write loses increments unless the lock excludes.
      assert.equal((await client.get(`${p}counter`)).text, String(2 * rounds))
      const tokens = [...JSON.parse(a.stdout), ...JSON.parse(b.stdout)].sort((x, y) => x - y)
      assert.equal(new Set(tokens).size, 2 * rounds, 'every holder got its own fencing token')
    })

    it('hands out increasing fencing tokens and releases through withLock', async () => {
      const name = `${unique('fence')}lock`
      const t1 = await client.withLock(name, { ttlSec: 10 }, async (lock) => {
        assert.match(lock.key, new RegExp(`^${name}/[0-9a-f]+$`))
        assert.ok((await client.get(lock.key)) !== null)
        return lock.fencingToken
      })
      const lock2 = await client.lock(name)
      assert.ok(lock2.fencingToken > t1)
      await lock2.release()
      await lock2.release()
      assert.equal((await client.getPrefix(`${name}/`)).count, 0)
    })

    it('releases the lock when the callback throws', async () => {
      const name = `${unique('throw')}lock`
      await assert.rejects(client.withLock(name, async () => { throw new Error('boom') }), /boom/)
      const again = await client.lock(name, { tryOnly: true })
      await again.release()
    })

    it('releases a lock whose handle was garbage-collected', async () => {
      const name = `${unique('gc')}lock`
      const { stdout } = await run(process.execPath, ['--expose-gc', path.join(fixtures, 'gc-lock.mjs'), server.endpoint, name])
      // With a 60 s session TTL only the release on collection frees it this soon.
      assert.equal(stdout, '0')
    })

    it('fails with LOCKED when tryOnly and held, and aborts a waiting lock', async () => {
      const name = `${unique('busy')}lock`
      const held = await client.lock(name)
      await assert.rejects(client.lock(name, { tryOnly: true }), (e) => e instanceof LockedError && e.code === 'LOCKED')
      const ac = new AbortController()
      const waiting = client.lock(name, { signal: ac.signal })
      setTimeout(() => ac.abort(), 100)
      await assert.rejects(waiting, (e) => e instanceof AbortError && e.code === 'ABORTED')
      await assert.rejects(client.lock(name, { timeoutMs: 100 }), (e) => e.code === 'TIMEOUT')
      await held.release()
      // The aborted and timed-out waiters left no keys behind.
      const next = await client.lock(name, { tryOnly: true })
      assert.equal((await client.getPrefix(`${name}/`)).count, 1)
      await next.release()
    })
  })

  describe(`elections against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('campaigns, proclaims, observes and resigns', async () => {
      const name = unique('elect').slice(0, -1)
      const election = client.election(name)
      assert.equal(await election.leader(), null)
      const ac = new AbortController()
      const observed = []
      const observing = (async () => {
        for await (const l of election.observe({ signal: ac.signal })) {
          observed.push(l.text)
          if (observed.length === 3) ac.abort()
        }
      })().then(() => null, (e) => e)
      const a = await election.campaign('a')
      assert.equal((await election.leader()).text, 'a')
      const bWins = client.election(name).campaign('b')
      await a.proclaim('a2')
      await a.resign()
      const b = await bWins
      assert.ok(b.revision > a.revision)
      await assert.rejects(a.proclaim('late'), NotLeaderError)
      assert.ok((await observing) instanceof AbortError)
      assert.deepEqual(observed, ['a', 'a2', 'b'])
      await b.resign()
    })
  })
}
