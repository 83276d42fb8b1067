// Service registration and subscriptions, with an instance killed -9, against kvd and etcd 3.4.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { kinds, startServer, unique, eventually } from './helpers.mjs'

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures')

for (const kind of kinds()) {
  describe(`discovery against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('registers with metadata and health, and subscribers see changes', async () => {
      const service = unique('web').slice(0, -1)
      const sub = await client.subscribe(service)
      const events = []
      sub.on('change', (e) => events.push([e.type, e.instance.id, e.instance.health]))
      const reg = await client.register(service, '10.0.0.5:8080', { id: 'w1', metadata: { zone: 'a' }, ttlSec: 5, version: '1.2' })
      assert.equal(reg.instance.id, 'w1')
      assert.match(reg.key, new RegExp(`/services/${service}/w1$`))
      await eventually(() => sub.instances.length === 1, 10_000, 'instance seen')
      const [inst] = sub.instances
      assert.deepEqual(inst.addrs, ['10.0.0.5:8080'])
      assert.deepEqual(inst.metadata, { zone: 'a' })
      assert.equal(inst.version, '1.2')
      await reg.setHealth('warning')
      await eventually(() => sub.instances[0]?.health === 'warning', 10_000, 'health update')
      await reg.close()
      await eventually(() => sub.instances.length === 0, 10_000, 'deregistration')
      // `instances` may run ahead of the events not yet delivered.
      await eventually(() => events.length === 3, 10_000, 'three events')
      assert.deepEqual(events, [
        ['added', 'w1', 'passing'],
        ['updated', 'w1', 'warning'],
        ['removed', 'w1', 'warning'],
      ])
      sub.close()
    })

    it('starts an iteration with the instances already there, and keeps instances current without readers', async () => {
      const service = unique('present').slice(0, -1)
      const a = await client.register(service, '10.0.0.7:80', { id: 'a', ttlSec: 5 })
      const quiet = await client.subscribe(service)
      const sub = await client.subscribe(service)
      const b = await client.register(service, '10.0.0.8:80', { id: 'b', ttlSec: 5 })
      // Nobody reads `quiet`'s events: its instance set follows anyway.
      await eventually(() => quiet.instances.length === 2, 10_000, 'both instances')
      await a.close()
      await eventually(() => quiet.instances.map((i) => i.id).join() === 'b', 10_000, 'a removed')
      // The iteration starts with the instances present when it starts (a is
      // gone by then), then follows changes.
      const seen = []
      let c = null
      for await (const e of sub) {
        seen.push(`${e.type}:${e.instance.id}`)
        if (seen.length === 1) c = await client.register(service, '10.0.0.9:80', { id: 'c', ttlSec: 5 })
        if (seen.length === 2) break
      }
      assert.deepEqual(seen, ['added:b', 'added:c'])
      await c.close()
      await b.close()
      sub.close()
      quiet.close()
    })

    it('re-registers after its lease is revoked', async () => {
      const service = unique('rereg').slice(0, -1)
      const reg = await client.register(service, '10.0.0.6:80', { id: 'r1', ttlSec: 2 })
      const first = reg.lease
      const back = once(reg, 'reregistered')
      await client.leaseRevoke(first)
      const [ev] = await back
      assert.notEqual(ev.lease, first)
      assert.equal(reg.lease, ev.lease)
      assert.ok(await client.get(reg.key))
      await reg.close()
    })

    it('removes an instance whose process was killed -9', async () => {
      const service = unique('killed').slice(0, -1)
      const sub = await client.subscribe(service)
      const seen = []
      const iterating = (async () => {
        for await (const e of sub) {
          seen.push(`${e.type}:${e.instance.id}`)
          if (e.type === 'removed') break
        }
      })()
      const child = spawn(process.execPath, [path.join(fixtures, 'registrant.mjs'), server.endpoint, service, 'k1'], { stdio: ['ignore', 'pipe', 'inherit'] })
      const [line] = await once(child.stdout, 'data')
      assert.equal(String(line).trim(), 'registered')
      await eventually(() => sub.instances.length === 1, 10_000, 'instance registered')
      child.kill('SIGKILL')
      await once(child, 'exit')
      await iterating
      assert.deepEqual(seen, ['added:k1', 'removed:k1'])
      assert.equal(sub.instances.length, 0)
      sub.close()
    })
  })
}
