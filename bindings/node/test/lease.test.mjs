// Leases: grant, keep-alive, time-to-live, revoke, and 'lost'.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { LeaseNotFoundError } from '../lib/index.mjs'
import { kinds, startServer, unique } from './helpers.mjs'

for (const kind of kinds()) {
  describe(`leases against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('grants, attaches keys, reports TTL and revokes', async () => {
      const p = unique('lease')
      const lease = await client.lease(30)
      assert.match(lease.id, /^\d+$/)
      assert.equal(lease.ttl, 30)
      await lease.put(`${p}k`, 'v')
      assert.equal((await client.get(`${p}k`)).lease, lease.id)
      const ttl = await lease.timeToLive({ keys: true })
      assert.ok(ttl.ttl > 0 && ttl.ttl <= 30)
      assert.equal(ttl.grantedTtl, 30)
      assert.deepEqual(ttl.keys.map(String), [`${p}k`])
      assert.ok((await client.leases()).includes(lease.id))
      await lease.revoke()
      assert.equal(await client.get(`${p}k`), null)
      await assert.rejects(client.put(`${p}k`, 'v', { lease }), LeaseNotFoundError)
    })

    it("keeps a lease alive past its TTL and emits 'lost' when it is revoked elsewhere", async () => {
      const lease = await client.lease(2)
      let lost = null
      lease.on('lost', (e) => (lost = e))
      const p = unique('keep')
      await lease.put(`${p}k`, 'v')
      // Three TTLs: only renewals keep the key.
      await new Promise((r) => setTimeout(r, 3500))
      assert.ok(await client.get(`${p}k`), 'key kept by the keeper')
      assert.equal(lost, null)
      const lostEvent = once(lease, 'lost')
      const other = server.client()
      await other.leaseRevoke(lease.id)
      await other.close()
      const [err] = await lostEvent
      assert.ok(err instanceof LeaseNotFoundError)
      assert.equal(err.code, 'LEASE_NOT_FOUND')
      assert.equal(lease.lost, true)
    })

    it('lets a lease without keep-alive expire', async () => {
      const lease = await client.lease(1, { autoKeepAlive: false })
      const p = unique('expire')
      await lease.put(`${p}k`, 'v')
      for (let i = 0; i < 200 && (await client.get(`${p}k`)); i++) await new Promise((r) => setTimeout(r, 50))
      assert.equal(await client.get(`${p}k`), null)
    })
  })
}
