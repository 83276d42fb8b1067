// Health checks, tags and filtered listings/subscriptions, against kvd and
// etcd 3.4: an HTTP check against a node:http server this test starts and
// stops, HTTPS checks against a node:https server (certificates from the
// openssl CLI, as security.test.mjs makes them), a TCP check, a TTL check
// pinged from JS and left to expire.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { once } from 'node:events'
import { InvalidArgumentError } from '../lib/index.mjs'
import { kinds, startServer, unique, eventually } from './helpers.mjs'

/** An HTTP server on 127.0.0.1 answering every request with `status`. */
async function httpServer(port = 0) {
  const srv = http.createServer((req, res) => {
    res.writeHead(srv.status, { 'content-type': 'text/plain' })
    res.end(`status ${srv.status}`)
  })
  srv.status = 200
  srv.listen(port, '127.0.0.1')
  await once(srv, 'listening')
  return srv
}

async function stopHttp(srv) {
  if (!srv.listening) return
  srv.closeAllConnections()
  await new Promise((resolve) => srv.close(resolve))
}

const ids = (list) => list.map((i) => i.id).sort().join()

/** A CA and a server certificate for 127.0.0.1 and localhost in a temporary dir. */
function makePki() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-check-pki-'))
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  ssl('req', '-x509', ...ec, '-days', '2', '-subj', '/CN=kv-check-test-CA', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  fs.writeFileSync(path.join(dir, 'web.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
  ssl('req', ...ec, '-subj', '/CN=web', '-keyout', 'web.key', '-out', 'web.csr')
  ssl('x509', '-req', '-in', 'web.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'web.ext', '-out', 'web.pem')
  return { dir, ca: path.join(dir, 'ca.pem'), cert: fs.readFileSync(path.join(dir, 'web.pem')), key: fs.readFileSync(path.join(dir, 'web.key')) }
}

/** An HTTPS server on 127.0.0.1 answering 200, recording the server names (SNI) clients send. */
async function httpsServer(pki) {
  const context = tls.createSecureContext({ cert: pki.cert, key: pki.key })
  const sni = new Set()
  const SNICallback = (name, cb) => {
    sni.add(name)
    cb(null, context)
  }
  const srv = https.createServer({ cert: pki.cert, key: pki.key, SNICallback }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('status 200')
  })
  srv.sni = sni
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  return srv
}

for (const kind of kinds()) {
  describe(`health checks and filters against ${kind}`, () => {
    let server, client
    before(async () => {
      server = await startServer(kind)
      client = server.client()
    })
    after(async () => {
      await client?.close()
      await server?.stop()
    })

    it('an HTTP check turns an instance critical while its server is down, seen through a filtered subscription', async (t) => {
      const service = unique('http').slice(0, -1)
      let web = await httpServer()
      // A failed assertion must not leave a server keeping the process alive.
      t.after(() => stopHttp(web))
      const { port } = web.address()
      const healthy = await client.subscribe(service, { health: 'passing' })
      const events = []
      // A removal carries the instance as last seen passing the filter.
      healthy.on('change', (e) => events.push(`${e.type}:${e.instance.id}:${e.instance.health}`))
      const reg = await client.register(service, `127.0.0.1:${port}`, {
        id: 'h1',
        ttlSec: 5,
        tags: ['web'],
        checks: [{ http: `http://127.0.0.1:${port}/health`, intervalMs: 100, timeoutMs: 2000 }],
      })
      // Like Consul's, a check starts critical until its first result.
      await eventually(() => healthy.instances.length === 1, 10_000, 'instance passing')
      const [inst] = healthy.instances
      assert.deepEqual(inst.tags, ['web'])
      assert.equal(inst.checks.http.health, 'passing')
      await eventually(() => reg.checks.http?.health === 'passing', 10_000, 'registration sees passing')

      await stopHttp(web)
      await eventually(() => healthy.instances.length === 0, 10_000, 'instance filtered out once critical')
      const [critical] = await client.list(service)
      assert.equal(critical.health, 'critical')
      assert.equal(critical.checks.http.health, 'critical')
      assert.deepEqual(await client.list(service, { health: 'warning' }), [])

      web = await httpServer(port)
      await eventually(() => healthy.instances.length === 1, 10_000, 'instance passing again')
      await eventually(() => reg.instance.health === 'passing', 10_000, 'registration passing again')
      // `instances` may run ahead of the events not yet delivered.
      await eventually(() => events.length === 3, 10_000, 'three events')
      assert.deepEqual(events, ['added:h1:passing', 'removed:h1:passing', 'added:h1:passing'])

      // A 429 is Consul's warning.
      web.status = 429
      await eventually(async () => (await client.list(service, { health: 'warning' }))[0]?.health === 'warning', 10_000, 'warning')
      assert.deepEqual(await client.list(service, { health: 'passing' }), [])
      await reg.close()
      healthy.close()
    })

    it('HTTPS checks verify the server against a CA file, for a server name, or not at all', async (t) => {
      const service = unique('https').slice(0, -1)
      const pki = makePki()
      t.after(() => fs.rmSync(pki.dir, { recursive: true, force: true }))
      const web = await httpsServer(pki)
      t.after(() => stopHttp(web))
      const url = `https://127.0.0.1:${web.address().port}/health`
      const check = (name, tlsOptions) => ({ name, http: url, intervalMs: 100, timeoutMs: 2000, ...tlsOptions })
      const reg = await client.register(service, '127.0.0.1:1', {
        id: 's1',
        ttlSec: 5,
        checks: [
          check('ca', { tlsCaFile: pki.ca }),
          // The system's roots do not know the test's CA.
          check('system-roots', {}),
          check('skip', { tlsSkipVerify: true }),
          // The name given is verified instead of the URL's host (for which
          // the certificate is valid too): the wrong name fails.
          check('named', { tlsCaFile: pki.ca, tlsServerName: 'localhost' }),
          check('misnamed', { tlsCaFile: pki.ca, tlsServerName: 'db.internal' }),
        ],
      })
      const [inst] = await eventually(async () => {
        const l = await client.list(service)
        return l.length === 1 && Object.values(l[0].checks).every((s) => s.output !== 'not run yet') && l
      }, 10_000, 'every check probed')
      const health = Object.fromEntries(Object.entries(inst.checks).map(([n, s]) => [n, s.health]))
      assert.deepEqual(health, { ca: 'passing', 'system-roots': 'critical', skip: 'passing', named: 'passing', misnamed: 'critical' }, JSON.stringify(inst.checks))
      for (const n of ['ca', 'skip', 'named']) assert.match(inst.checks[n].output, /status 200/)
      assert.match(inst.checks['system-roots'].output, /TLS handshake failed.*UnknownIssuer/)
      assert.match(inst.checks.misnamed.output, /TLS handshake failed.*db\.internal/)
      // The name given is also the SNI; an IP address host sends none.
      assert.deepEqual([...web.sni].sort(), ['db.internal', 'localhost'])
      await reg.close()
    })

    it('a TCP check follows whether its port accepts connections', async (t) => {
      const service = unique('tcp').slice(0, -1)
      const listener = net.createServer((s) => s.destroy())
      listener.listen(0, '127.0.0.1')
      await once(listener, 'listening')
      t.after(() => listener.listening && listener.close())
      const addr = `127.0.0.1:${listener.address().port}`
      const reg = await client.register(service, addr, {
        id: 't1',
        ttlSec: 5,
        checks: [{ tcp: addr, intervalMs: 100, timeoutMs: 1000, name: 'port' }],
      })
      await eventually(async () => (await client.list(service, { health: 'passing' })).length === 1, 10_000, 'tcp passing')
      await new Promise((resolve) => listener.close(resolve))
      await eventually(async () => (await client.list(service, { health: 'passing' })).length === 0, 10_000, 'tcp critical')
      const [inst] = await client.list(service, { health: 'any' })
      assert.equal(inst.checks.port.health, 'critical')
      assert.ok(inst.checks.port.output.length > 0, 'the failed connect is the output')
      await reg.close()
    })

    it('a TTL check holds while JS reports it and turns critical when left to expire', async () => {
      const service = unique('ttl').slice(0, -1)
      const reg = await client.register(service, '10.0.0.1:80', { id: 'w1', ttlSec: 5, checks: [{ ttlMs: 1500, name: 'heartbeat' }] })
      assert.equal(reg.instance.health, 'critical', 'critical until the first report')
      assert.deepEqual(await client.list(service, { health: 'passing' }), [])

      await reg.passTtl('heartbeat', 'queue drained')
      const [passing] = await eventually(async () => {
        const l = await client.list(service, { health: 'passing' })
        return l.length === 1 && l
      }, 10_000, 'ttl passing')
      assert.deepEqual(passing.checks.heartbeat, { health: 'passing', output: 'queue drained' })

      await reg.warnTtl('heartbeat', 'queue long')
      await eventually(async () => (await client.list(service, { health: 'passing' })).length === 0, 10_000, 'warning is not passing')
      const [warning] = await client.list(service, { health: 'warning' })
      assert.deepEqual(warning.checks.heartbeat, { health: 'warning', output: 'queue long' })

      await reg.passTtl('heartbeat')
      await eventually(async () => (await client.list(service, { health: 'passing' })).length === 1, 10_000, 'passing again')
      // No report for longer than ttlMs: the check expires.
      await eventually(async () => (await client.list(service, { health: 'warning' })).length === 0, 15_000, 'ttl expired')
      const [expired] = await client.list(service)
      assert.equal(expired.checks.heartbeat.health, 'critical')
      await eventually(() => reg.checks.heartbeat?.health === 'critical', 10_000, 'registration sees the expiry')

      await reg.failTtl('heartbeat', 'shutting down')
      await assert.rejects(reg.passTtl('nope'), { code: 'INVALID_ARGUMENT', message: /nope/ })
      await reg.close()
      await assert.rejects(reg.passTtl('heartbeat'), { code: 'CLOSED' })
    })

    it('filters listings and subscriptions by tags, metadata and health (default: any)', async () => {
      const service = unique('tags').slice(0, -1)
      const a = await client.register(service, '10.0.0.1:80', { id: 'a', ttlSec: 5, tags: ['v1', 'eu'], metadata: { zone: 'eu-1' } })
      const b = await client.register(service, '10.0.0.2:80', { id: 'b', ttlSec: 5, tags: ['v2', 'eu'], metadata: { zone: 'eu-2' } })
      const c = await client.register(service, '10.0.0.3:80', { id: 'c', ttlSec: 5, tags: ['v2'], health: 'critical' })
      assert.equal(ids(await client.list(service)), 'a,b,c', 'no filter: every instance, critical too')
      assert.equal(ids(await client.list(service, { tags: ['eu'] })), 'a,b')
      assert.equal(ids(await client.list(service, { tags: ['v2', 'eu'] })), 'b')
      assert.equal(ids(await client.list(service, { metadata: { zone: 'eu-1' } })), 'a')
      assert.equal(ids(await client.list(service, { tags: ['v2'], health: 'warning' })), 'b')
      assert.equal(ids(await client.list(service, { tags: ['v2'], health: 'any' })), 'b,c')
      assert.deepEqual((await client.list(service, { tags: ['v1'] }))[0].tags, ['v1', 'eu'])

      const v2 = await client.subscribe(service, { tags: ['v2'] })
      const seen = []
      v2.on('change', (e) => seen.push(`${e.type}:${e.instance.id}`))
      await eventually(() => ids(v2.instances) === 'b,c', 10_000, 'v2 instances')
      const d = await client.register(service, '10.0.0.4:80', { id: 'd', ttlSec: 5, tags: ['v1'] })
      const e = await client.register(service, '10.0.0.5:80', { id: 'e', ttlSec: 5, tags: ['v2'] })
      await eventually(() => ids(v2.instances) === 'b,c,e', 10_000, 'e joins, d does not')
      await eventually(() => seen.length === 3, 10_000, 'three events')
      assert.deepEqual(seen.sort(), ['added:b', 'added:c', 'added:e'])
      v2.close()
      for (const r of [a, b, c, d, e]) await r.close()
    })

    it('refuses bad checks and filters with INVALID_ARGUMENT, registering nothing', async () => {
      const service = unique('bad').slice(0, -1)
      const bad = [
        [{}, /exactly one of/],
        [{ http: 'http://127.0.0.1:1/', tcp: '127.0.0.1:1' }, /exactly one of/],
        [{ http: 'ftp://127.0.0.1/' }, /scheme/],
        [{ tcp: '' }, /empty/],
        [{ command: [] }, /empty command/],
        [{ ttlMs: 0 }, /ttlMs must be positive/],
        [{ tcp: '127.0.0.1:1', intervalMs: -5 }, /intervalMs/],
        [{ tcp: '127.0.0.1:1', failuresBeforeCritical: 0 }, /failuresBeforeCritical/],
        [{ tcp: '127.0.0.1:1', successBeforePassing: 1.5 }, /successBeforePassing/],
        // TLS settings need an https:// target, a readable CA, a valid name.
        [{ http: 'http://127.0.0.1:1/', tlsSkipVerify: true }, /need an https:\/\//],
        [{ grpc: '127.0.0.1:1', tlsServerName: 'localhost' }, /need an https:\/\//],
        [{ http: 'https://127.0.0.1:1/', tlsCaFile: '/nonexistent/ca.pem' }, /check-tls-ca-file/],
        [{ http: 'https://127.0.0.1:1/', tlsServerName: 'not a name' }, /check-tls-server-name/],
      ]
      for (const [check, message] of bad) {
        await assert.rejects(client.register(service, '10.0.0.1:80', { checks: [check] }), { code: 'INVALID_ARGUMENT', message }, JSON.stringify(check))
      }
      await assert.rejects(
        client.register(service, '10.0.0.1:80', { checks: [{ ttlMs: 1000, name: 'x' }, { tcp: '127.0.0.1:1', name: 'x' }] }),
        { code: 'INVALID_ARGUMENT', message: /"x"/ },
      )
      // Wrong types are napi's checks, surfacing as the same error class.
      for (const options of [{ checks: 'x' }, { checks: [{ http: 5 }] }, { tags: 'v1' }, { checks: [{ ttlMs: NaN }] }, { checks: [{ http: 'https://h/', tlsSkipVerify: 'yes' }] }]) {
        await assert.rejects(client.register(service, '10.0.0.1:80', options), InvalidArgumentError, JSON.stringify(options))
      }
      await assert.rejects(client.list(service, { tags: 'v1' }), InvalidArgumentError)
      await assert.rejects(client.list(service, { health: 'critical' }), { code: 'INVALID_ARGUMENT', message: /passing, warning or any/ })
      await assert.rejects(client.subscribe(service, { health: 'ok' }), { code: 'INVALID_ARGUMENT' })
      assert.deepEqual(await client.list(service), [])
    })
  })
}
