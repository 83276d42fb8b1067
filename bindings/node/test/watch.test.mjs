// Watches: async iterator, EventEmitter, AbortSignal, cancel(), COMPACTED,
// and a kvd restart with no event lost or repeated.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { CompactedError, AbortError } from '../lib/index.mjs'
import { kinds, startServer, unique, Server, eventually } from './helpers.mjs'

for (const kind of kinds()) {
  describe(`watch against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('iterates put and delete events in order', async () => {
      const p = unique('iter')
      const watcher = client.watchPrefix(p, { prevKv: true })
      await watcher.ready()
      const writes = (async () => {
        await client.put(`${p}a`, '1')
        await client.put(`${p}a`, '2')
        await client.delete(`${p}a`)
      })()
      const seen = []
      for await (const ev of watcher) {
        seen.push([ev.type, ev.kv.keyText, ev.kv.text, ev.prevKv?.text ?? null])
        if (seen.length === 3) break
      }
      await writes
      assert.deepEqual(seen, [
        ['put', `${p}a`, '1', null],
        ['put', `${p}a`, '2', '1'],
        ['delete', `${p}a`, '', '2'],
      ])
      assert.equal(watcher.cancelled, true)
    })

    it('carries binary keys and values, revisions and 64-bit lease IDs exactly', async () => {
      const p = unique('exact')
      const lease = await client.lease(30)
      const watcher = client.watchPrefix(p, { prevKv: true })
      await watcher.ready()
      const key = Buffer.concat([Buffer.from(p), Buffer.from([0, 0xff, 0x80])])
      const value = Buffer.from([0xde, 0xad, 0, 0xbe, 0xef])
      const put = await client.put(key, value, { lease })
      await client.put(key, '')
      const seen = []
      for await (const ev of watcher) {
        seen.push(ev)
        if (seen.length === 2) break
      }
      assert.deepEqual(seen[0].kv.key, key)
      assert.deepEqual(seen[0].kv.value, value)
      assert.equal(seen[0].kv.lease, lease.id)
      assert.equal(seen[0].kv.modRevision, put.revision)
      assert.equal(seen[0].revision, put.revision)
      assert.equal(seen[0].kv.version, 1)
      assert.equal(seen[1].kv.value.length, 0)
      assert.equal(seen[1].kv.lease, '0')
      assert.deepEqual(seen[1].prevKv.value, value)
      assert.equal(seen[1].prevKv.lease, lease.id)
      assert.equal(seen[1].prevKv.createRevision, put.revision)
      await lease.revoke()
    })

    it('emits put and delete events and ends on cancel()', async () => {
      const p = unique('emit')
      const watcher = client.watch(`${p}k`)
      await watcher.ready()
      const puts = []
      watcher.on('put', (ev) => puts.push(ev.kv.text))
      const deleted = once(watcher, 'delete')
      await client.put(`${p}k`, 'x')
      await client.put(`${p}other`, 'ignored')
      await client.delete(`${p}k`)
      const [ev] = await deleted
      assert.equal(ev.kv.keyText, `${p}k`)
      assert.deepEqual(puts, ['x'])
      const ended = once(watcher, 'end')
      watcher.cancel()
      await ended
    })

    it('replays from startRevision', async () => {
      const p = unique('replay')
      const r = await client.put(`${p}a`, '1')
      await client.put(`${p}b`, '2')
      const ac = new AbortController()
      const seen = []
      for await (const ev of client.watchPrefix(p, { startRevision: r.revision, signal: ac.signal })) {
        seen.push(ev.kv.text)
        if (seen.length === 2) break
      }
      assert.deepEqual(seen, ['1', '2'])
    })

    it('stops an iteration through AbortSignal with an AbortError', async () => {
      const p = unique('abort')
      const ac = new AbortController()
      const watcher = client.watchPrefix(p, { signal: ac.signal })
      await watcher.ready()
      const got = []
      const loop = (async () => {
        for await (const ev of watcher) {
          got.push(ev.kv.text)
          ac.abort()
        }
      })().then(() => null, (e) => e)
      await client.put(`${p}a`, '1')
      const err = await loop
      assert.ok(err instanceof AbortError && err.code === 'ABORTED', `${err}`)
      assert.deepEqual(got, ['1'])
    })

    it('fails with COMPACTED and the compact revision when history is gone', async () => {
      const p = unique('compacted')
      const r1 = await client.put(`${p}a`, '1')
      const r2 = await client.put(`${p}a`, '2')
      await client.compact(r2.revision, { physical: true })
      const watcher = client.watchPrefix(p, { startRevision: r1.revision })
      await assert.rejects(
        (async () => {
          for await (const _ of watcher) {
            /* nothing may arrive */
          }
        })(),
        (e) => {
          assert.ok(e instanceof CompactedError, `${e}`)
          assert.equal(e.code, 'COMPACTED')
          assert.equal(e.compactRevision, r2.revision)
          return true
        },
      )
    })
  })
}

describe('watch across a kvd restart', () => {
  let server, client
  before(async () => {
    server = await new Server('kvd').start()
    client = server.client()
  })
  after(async () => {
    await client?.close()
    await server?.stop()
  })

  it('delivers every event exactly once while kvd is killed and restarted', async () => {
    const p = unique('restart')
    const watcher = client.watchPrefix(p)
    await watcher.ready()
    const seen = []
    watcher.on('put', (ev) => seen.push(Number(ev.kv.text)))
    const writer = server.client()
    const N = 30
    for (let i = 0; i < N / 2; i++) await writer.put(`${p}k${i % 3}`, String(i))
    await server.restart()
    // Writes after the restart; a write cut off by the restart would be
    // retried by the test only if it failed before being sent, so only
    // acknowledged writes are counted.
    let next = N / 2
    await eventually(async () => {
      try {
        while (next < N) {
          await writer.put(`${p}k${next % 3}`, String(next))
          next++
        }
        return true
      } catch {
        return false
      }
    }, 30_000, 'writes after restart')
    await eventually(() => seen.length >= N, 30_000, `all ${N} events (saw ${seen.length})`)
    assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i))
    await writer.close()
    watcher.cancel()
  })

  it("emits 'resumed' once with the revision it continues from", async () => {
    const p = unique('resumed')
    const watcher = client.watchPrefix(p)
    await watcher.ready()
    // One ordered log of puts (their revisions) and resumes.
    const log = []
    watcher.on('put', (ev) => log.push(['put', ev.revision, Number(ev.kv.text)]))
    watcher.on('resumed', (rev) => log.push(['resumed', rev]))
    const writer = server.client()
    const N = 10
    for (let i = 0; i < N / 2; i++) await writer.put(`${p}k`, String(i))
    await eventually(() => log.length >= N / 2, 30_000, 'events before the restart')
    await server.restart()
    let next = N / 2
    await eventually(async () => {
      try {
        while (next < N) {
          await writer.put(`${p}k`, String(next))
          next++
        }
        return true
      } catch {
        return false
      }
    }, 30_000, 'writes after restart')
    await eventually(() => log.length >= N + 1, 30_000, `all events and a resume (log ${JSON.stringify(log)})`)
    const resumes = log.filter((e) => e[0] === 'resumed')
    assert.equal(resumes.length, 1, `one resume: ${JSON.stringify(log)}`)
    const puts = log.filter((e) => e[0] === 'put')
    assert.deepEqual(puts.map((e) => e[2]), Array.from({ length: N }, (_, i) => i))
    // Announced after the last event before it, naming a revision no
    // delivered event lies behind.
    const at = log.findIndex((e) => e[0] === 'resumed')
    const before = log.slice(0, at)
    const after = log.slice(at + 1)
    const resumedAt = resumes[0][1]
    assert.ok(before.every((e) => e[1] < resumedAt) && after.every((e) => e[1] >= resumedAt), JSON.stringify(log))
    assert.ok(before.length >= N / 2, JSON.stringify(log))
    await writer.close()
    watcher.cancel()
  })
})
