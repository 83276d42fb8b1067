// KV, txn, compact, status, members and error codes, against kvd and etcd 3.4.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import {
  Client,
  Compare,
  Op,
  CompactedError,
  FutureRevisionError,
  LeaseNotFoundError,
  UnavailableError,
  InvalidArgumentError,
  ClosedError,
  KvError,
} from '../lib/index.mjs'
import { kinds, startServer, unique, fast } from './helpers.mjs'

for (const kind of kinds()) {
  describe(`kv against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('puts and gets strings and Buffers with revisions', async () => {
      const p = unique('kv')
      const put = await client.put(`${p}a`, 'hello')
      assert.ok(put.revision > 0)
      const kv = await client.get(`${p}a`)
      assert.ok(Buffer.isBuffer(kv.value))
      assert.equal(kv.text, 'hello')
      assert.equal(kv.keyText, `${p}a`)
      assert.equal(kv.createRevision, put.revision)
      assert.equal(kv.modRevision, put.revision)
      assert.equal(kv.version, 1)
      const bin = Buffer.from([0, 1, 2, 255])
      await client.put(Buffer.from(`${p}b`), bin)
      assert.deepEqual((await client.get(`${p}b`)).value, bin)
      assert.equal(await client.get(`${p}missing`), null)
      const again = await client.put(`${p}a`, 'world', { prevKv: true })
      assert.equal(again.prevKv.text, 'hello')
      const old = await client.get(`${p}a`, { revision: put.revision })
      assert.equal(old.text, 'hello')
    })

    it('reads and deletes prefixes and ranges', async () => {
      const p = unique('range')
      for (const k of ['a', 'b', 'c', 'd']) await client.put(`${p}${k}`, k)
      await client.put(`${p.slice(0, -1)}0`, 'outside')
      const all = await client.getPrefix(p)
      assert.deepEqual(all.kvs.map((kv) => kv.text), ['a', 'b', 'c', 'd'])
      assert.equal(all.count, 4)
      assert.ok(all.revision >= all.kvs[3].modRevision)
      const some = await client.getRange(`${p}b`, `${p}d`)
      assert.deepEqual(some.kvs.map((kv) => kv.text), ['b', 'c'])
      const limited = await client.getPrefix(p, { limit: 2, sort: { target: 'key', order: 'descend' } })
      assert.deepEqual(limited.kvs.map((kv) => kv.text), ['d', 'c'])
      assert.equal(limited.more, true)
      const del = await client.delete(`${p}a`, { prevKv: true })
      assert.equal(del.deleted, 1)
      assert.equal(del.prevKvs[0].text, 'a')
      const dr = await client.deleteRange(`${p}b`, `${p}c`)
      assert.equal(dr.deleted, 1)
      const dp = await client.deletePrefix(p)
      assert.equal(dp.deleted, 2)
      assert.equal((await client.getPrefix(p)).count, 0)
      assert.ok(await client.get(`${p.slice(0, -1)}0`))
    })

    it('reads many key-values at once, each with its own bytes, revisions and lease', async () => {
      // Range reads reach JS packed (src/convert.rs PackedKvs): check every
      // field of every key-value against what was written, with empty and
      // binary values, sizes that differ, and a lease ID above 2^32.
      const p = unique('many')
      const lease = await client.lease(60)
      const want = []
      for (let i = 0; i < 300; i++) {
        const key = `${p}${String(i).padStart(3, '0')}`
        const value = i % 7 === 0 ? Buffer.alloc(0) : Buffer.from(Array.from({ length: i % 50 }, (_, j) => (i + j) % 256))
        const r = await client.put(key, value, i % 3 === 0 ? { lease: lease.id } : undefined)
        want.push({ key, value, rev: r.revision, lease: i % 3 === 0 ? lease.id : '0' })
      }
      const got = await client.getPrefix(p)
      assert.equal(got.kvs.length, 300)
      assert.equal(got.count, 300)
      got.kvs.forEach((kv, i) => {
        assert.equal(kv.keyText, want[i].key)
        assert.ok(Buffer.isBuffer(kv.value) && kv.value.equals(want[i].value), `value ${i}`)
        assert.equal(kv.createRevision, want[i].rev)
        assert.equal(kv.modRevision, want[i].rev)
        assert.equal(kv.version, 1)
        assert.equal(kv.lease, want[i].lease)
      })
      assert.ok(BigInt(lease.id) > 0n)
      const limited = await client.getPrefix(p, { limit: 10 })
      assert.deepEqual(limited.kvs.map((kv) => kv.keyText), want.slice(0, 10).map((w) => w.key))
      assert.equal(limited.more, true)
      const one = await client.get(want[3].key)
      assert.equal(one.lease, lease.id)
      assert.equal(await client.get(`${p}absent`), null)
      const t = await client.txn().andThen(Op.getPrefix(p, { limit: 5 })).commit()
      assert.deepEqual(t.responses[0].kvs.map((kv) => kv.text), want.slice(0, 5).map((w) => w.value.toString()))
      await lease.revoke()
    })

    it('runs transactions with the compare/op builder', async () => {
      const p = unique('txn')
      const first = await client
        .txn()
        .when(Compare.version(`${p}k`, '==', 0))
        .andThen(Op.put(`${p}k`, 'first'), Op.get(`${p}k`))
        .orElse(Op.get(`${p}k`))
        .commit()
      assert.equal(first.succeeded, true)
      assert.equal(first.responses[0].kind, 'put')
      assert.equal(first.responses[1].kvs[0].text, 'first')
      const second = await client
        .txn()
        .when(Compare.version(`${p}k`, '==', 0))
        .andThen(Op.put(`${p}k`, 'second'))
        .orElse(Op.get(`${p}k`))
        .commit()
      assert.equal(second.succeeded, false)
      assert.equal(second.responses[0].kvs[0].text, 'first')
      const kv = await client.get(`${p}k`)
      const cas = await client
        .txn()
        .when(Compare.value(`${p}k`, '==', 'first'), Compare.modRevision(`${p}k`, '==', kv.modRevision))
        .andThen(Op.put(`${p}k`, 'swapped'), Op.delete(`${p}gone`))
        .commit()
      assert.equal(cas.succeeded, true)
      assert.equal((await client.get(`${p}k`)).text, 'swapped')
    })

    it('compacts, and reads below the compaction fail with COMPACTED', async () => {
      const p = unique('compact')
      const r1 = await client.put(`${p}k`, 'v1')
      const r2 = await client.put(`${p}k`, 'v2')
      await client.compact(r2.revision, { physical: true })
      await assert.rejects(client.get(`${p}k`, { revision: r1.revision }), (e) => {
        assert.ok(e instanceof CompactedError)
        assert.equal(e.code, 'COMPACTED')
        return true
      })
    })

    it('reports errors as typed classes with stable codes', async () => {
      const p = unique('err')
      await assert.rejects(client.put(`${p}k`, 'v', { lease: '12345' }), (e) => {
        assert.ok(e instanceof LeaseNotFoundError && e instanceof KvError && e instanceof Error)
        assert.equal(e.code, 'LEASE_NOT_FOUND')
        assert.equal(e.message, 'etcdserver: requested lease not found')
        return true
      })
      await assert.rejects(client.get(`${p}k`, { revision: 1e9 }), FutureRevisionError)
      await assert.rejects(client.put(42, 'v'), InvalidArgumentError)
      await assert.rejects(client.put(`${p}k`, 'v', { lease: 'not-a-number' }), (e) => e.code === 'INVALID_ARGUMENT')
    })

    it('reports status and members', async () => {
      const st = await client.status()
      assert.notEqual(st.leader, '0')
      assert.match(st.version, /^3\./)
      const members = await client.members()
      assert.equal(members.length, 1)
      assert.equal(members[0].clientUrls[0], server.endpoint)
      assert.equal(members[0].id, st.leader)
    })
  })
}

describe('client lifecycle', () => {
  it('fails with UNAVAILABLE when nothing listens', async () => {
    const c = new Client({ endpoints: ['127.0.0.1:1'], ...fast, requestTimeoutMs: 1000 })
    await assert.rejects(c.get('k'), (e) => e instanceof UnavailableError && e.code === 'UNAVAILABLE')
    await c.close()
  })

  it('fails calls after close with CLOSED', async () => {
    const c = new Client({ endpoints: ['127.0.0.1:1'] })
    await c.close()
    await assert.rejects(c.get('k'), (e) => e instanceof ClosedError && e.code === 'CLOSED')
  })

  it('rejects bad options', () => {
    assert.throws(() => new Client({ endpoints: [] }), InvalidArgumentError)
  })
})
