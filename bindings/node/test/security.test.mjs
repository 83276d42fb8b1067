// Auth (user/password, permissions, token renewal) and TLS (mutual) against
// the server kinds in KVCLIENT_SECURE_KINDS (default: etcd 3.4 and kvd). Both
// are configured with etcd's flags and etcdctl. Certificates come from the
// openssl CLI.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { Client, AuthFailedError, PermissionDeniedError, KvError } from '../lib/index.mjs'
import { Server, ETCD_BIN, KVD_BIN, fast } from './helpers.mjs'

const SECURE_KINDS = (process.env.KVCLIENT_SECURE_KINDS ?? 'etcd,kvd').split(',').filter(Boolean)
const binOf = { etcd: ETCD_BIN, kvd: KVD_BIN }
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

function openssl(dir, args) {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** A CA and one leaf for 127.0.0.1 (server and client auth) in `dir`. */
function makePki(dir) {
  openssl(dir, ['req', '-x509', ...EC_KEY, '-days', '2', '-subj', '/CN=kvclient-node-test-CA', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  fs.writeFileSync(path.join(dir, 'leaf.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n')
  openssl(dir, ['req', ...EC_KEY, '-subj', '/CN=leaf', '-keyout', 'leaf.key', '-out', 'leaf.csr'])
  openssl(dir, ['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'leaf.ext', '-out', 'leaf.pem'])
  const read = (f) => fs.readFileSync(path.join(dir, f))
  return { ca: read('ca.pem'), cert: read('leaf.pem'), key: read('leaf.key'), dir }
}

for (const kind of SECURE_KINDS) {
  describe(`TLS against ${kind}`, { skip: !fs.existsSync(binOf[kind]) && `${kind} not installed` }, () => {
    let server, pki
    before(async () => {
      server = new Server(kind, [], 'https')
      pki = makePki(server.dir)
      const f = (n) => path.join(pki.dir, n)
      server.extraArgs = [`--cert-file=${f('leaf.pem')}`, `--key-file=${f('leaf.key')}`, `--trusted-ca-file=${f('ca.pem')}`, '--client-cert-auth']
      await server.start((s) => s.waitReady({ tls: { ca: pki.ca, cert: pki.cert, key: pki.key } }))
    })
    after(async () => {
      await server?.stop()
    })

    it('works with the CA and a client certificate', async () => {
      const c = server.client({ tls: { ca: pki.ca, cert: pki.cert.toString(), key: pki.key } })
      await c.put('tls/k', 'v')
      assert.equal((await c.get('tls/k')).text, 'v')
      await c.close()
    })

    it('fails without a client certificate, and with an unknown CA', async () => {
      const noCert = server.client({ tls: { ca: pki.ca }, requestTimeoutMs: 2000 })
      await assert.rejects(noCert.get('tls/k'), (e) => e instanceof KvError && ['UNAVAILABLE', 'TRANSPORT', 'TIMEOUT'].includes(e.code))
      await noCert.close()
      const plain = new Client({ endpoints: [server.endpoint.replace('https', 'http')], ...fast, requestTimeoutMs: 2000 })
      await assert.rejects(plain.get('tls/k'), KvError)
      await plain.close()
    })
  })

  describe(`auth against ${kind}`, { skip: !fs.existsSync(binOf[kind]) && `${kind} not installed` }, () => {
    let server
    const etcdctl = (...args) =>
      execFileSync('etcdctl', [`--endpoints=${server.endpoint}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] })
    before(async () => {
      // Tokens expire after 1 s, so the renewal test need not wait long.
      server = await new Server(kind, ['--auth-token-ttl=1']).start()
      etcdctl('user', 'add', 'root:rootpw')
      etcdctl('role', 'add', 'app')
      etcdctl('role', 'grant-permission', 'app', 'readwrite', 'app/', '--prefix=true')
      etcdctl('user', 'add', 'alice:alicepw')
      etcdctl('user', 'grant-role', 'alice', 'app')
      etcdctl('auth', 'enable')
    })
    after(async () => {
      await server?.stop()
    })

    it('authenticates, and enforces permissions with PERMISSION_DENIED', async () => {
      const alice = await Client.connect({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'alicepw' }, ...fast })
      await alice.put('app/x', '1')
      assert.equal((await alice.get('app/x')).text, '1')
      await assert.rejects(alice.put('other/x', '1'), (e) => e instanceof PermissionDeniedError && e.code === 'PERMISSION_DENIED')
      const w = alice.watchPrefix('app/')
      await w.ready()
      const got = new Promise((resolve) => w.once('put', resolve))
      await alice.put('app/y', '2')
      assert.equal((await got).kv.text, '2')
      w.cancel()
      await alice.close()
    })

    it('renews an expired token transparently', async () => {
      const alice = await Client.connect({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'alicepw' }, ...fast })
      await alice.put('app/renew', '1')
      await new Promise((r) => setTimeout(r, 3000))
      await alice.put('app/renew', '2')
      assert.equal((await alice.get('app/renew')).text, '2')
      await alice.close()
    })

    it('fails to connect with a wrong password with AUTH_FAILED', async () => {
      await assert.rejects(
        Client.connect({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'wrong' }, ...fast }),
        (e) => e instanceof AuthFailedError && e.code === 'AUTH_FAILED',
      )
      const lazy = new Client({ endpoints: [server.endpoint], auth: { username: 'alice', password: 'wrong' }, ...fast })
      await assert.rejects(lazy.get('app/x'), AuthFailedError)
      await lazy.close()
    })
  })
}
