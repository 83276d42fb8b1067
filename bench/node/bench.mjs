// Node client benchmark: kvclient (this repo's napi-rs package) against
// npm's etcd3 (grpc-js), in one run against the same kvd.
//
// Workloads, each run for both clients in turn (alternating order per
// round, best round kept): sequential put, sequential get, 64 concurrent
// puts, get of a 1000-key prefix (key-values built as JS objects), and
// watch events/s delivered to JS (a watch replaying N events from
// a start revision, so the writer is not measured). CPU per op is this
// Node process's user+system CPU (all threads: the addon's Tokio threads
// and grpc-js alike) divided by the operations; kvd runs in its own process.
//
//   node bench.mjs [--quick] [--endpoint http://127.0.0.1:2379]
//
// Without --endpoint it starts kvd ($KVD_BIN, else target/release/kvd,
// else target/debug/kvd) on free ports with a temp data dir and stops it.
// DATA_DIR_ON=tmpfs (the default) puts that data dir under /dev/shm, so
// kvd's fsync costs nothing and the clients' own cost shows;
// DATA_DIR_ON=disk puts it under target/ (a real disk: every write waits
// for an fsync, a constant every client pays the same).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.join(here, '..', '..')
const pkg = path.join(root, 'bindings', 'node')
const require = createRequire(path.join(pkg, 'package.json'))
const { Client } = require('./lib/index.js')
const { Etcd3 } = require('etcd3')

const args = process.argv.slice(2)
const quick = args.includes('--quick')
const endpointArg = args.includes('--endpoint') ? args[args.indexOf('--endpoint') + 1] : null
const N_SEQ = quick ? 500 : 3000
const N_CONC = quick ? 2000 : 20000
const CONC = 64
const N_WATCH = quick ? 5000 : 50000
const RANGE_KEYS = 1000
const N_RANGE = quick ? 50 : 300
const ROUNDS = quick ? 1 : 3
const VALUE = 'v'.repeat(128)

function cpuMicros() {
  const u = process.cpuUsage()
  return u.user + u.system
}

async function measure(ops, fn) {
  const c0 = cpuMicros()
  const t0 = process.hrtime.bigint()
  await fn()
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = cpuMicros() - c0
  return { opsPerSec: ops / secs, cpuPerOpUs: cpu / ops }
}

async function pool(n, conc, fn) {
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      await fn(i)
    }
  }
  await Promise.all(Array.from({ length: conc }, worker))
}

// The two clients behind one interface.
function kvclient(endpoint) {
  const c = new Client({ endpoints: [endpoint] })
  return {
    name: 'kvclient',
    put: (k, v) => c.put(k, v),
    get: (k) => c.get(k).then((kv) => kv?.value),
    getPrefix: (p) => c.getPrefix(p).then((r) => r.kvs),
    watchReplay: (prefix, startRevision, n) =>
      new Promise((resolve, reject) => {
        let seen = 0
        const w = c.watchPrefix(prefix, { startRevision })
        w.on('put', () => {
          if (++seen === n) {
            w.cancel()
            resolve()
          }
        })
        w.on('error', reject)
      }),
    revision: async () => (await c.status()).header.revision,
    close: () => c.close(),
  }
}

function etcd3(endpoint) {
  const c = new Etcd3({ hosts: [endpoint] })
  return {
    name: 'etcd3',
    put: (k, v) => c.put(k).value(v).exec(),
    get: (k) => c.get(k).buffer(),
    getPrefix: (p) => c.getAll().prefix(p).exec().then((r) => r.kvs),
    watchReplay: async (prefix, startRevision, n) => {
      const w = await c.watch().prefix(prefix).startRevision(String(startRevision)).create()
      await new Promise((resolve, reject) => {
        let seen = 0
        w.on('put', () => {
          if (++seen === n) resolve()
        })
        w.on('error', reject)
      })
      await w.cancel()
    },
    revision: async () => Number((await c.maintenance.status()).header.revision),
    close: () => c.close(),
  }
}

async function runOne(client, round) {
  const p = `bench/${client.name}/${round}/`
  const r = {}
  r.seqPut = await measure(N_SEQ, async () => {
    for (let i = 0; i < N_SEQ; i++) await client.put(`${p}seq/${i % 100}`, VALUE)
  })
  r.seqGet = await measure(N_SEQ, async () => {
    for (let i = 0; i < N_SEQ; i++) await client.get(`${p}seq/${i % 100}`)
  })
  r.concPut = await measure(N_CONC, () => pool(N_CONC, CONC, (i) => client.put(`${p}conc/${i % 1000}`, VALUE)))
  r.concGet = await measure(N_CONC, () => pool(N_CONC, CONC, (i) => client.get(`${p}conc/${i % 1000}`)))
  await pool(RANGE_KEYS, CONC, (i) => client.put(`${p}range/${String(i).padStart(4, '0')}`, VALUE))
  r.range = await measure(N_RANGE, async () => {
    for (let i = 0; i < N_RANGE; i++) {
      const kvs = await client.getPrefix(`${p}range/`)
      if (kvs.length !== RANGE_KEYS) throw new Error(`${client.name}: ${kvs.length} keys`)
    }
  })
  // Events to replay: written beforehand with 64 writers.
  const start = (await client.revision()) + 1
  await pool(N_WATCH, CONC, (i) => client.put(`${p}watch/${i % 500}`, VALUE))
  r.watch = await measure(N_WATCH, () => client.watchReplay(`${p}watch/`, start, N_WATCH))
  return r
}

/** The directory the data dir goes under, from DATA_DIR_ON. */
function dataRoot() {
  const on = process.env.DATA_DIR_ON || 'tmpfs'
  if (on === 'tmpfs') return '/dev/shm'
  if (on === 'disk') return process.env.CARGO_TARGET_DIR || path.join(root, 'target')
  throw new Error(`DATA_DIR_ON must be tmpfs or disk, not ${on}`)
}

function loadAverage() {
  return os.loadavg().map((l) => l.toFixed(2)).join(' ')
}

async function startKvd() {
  // helpers.mjs makes the server's dir under os.tmpdir(), which reads TMPDIR.
  process.env.TMPDIR = dataRoot()
  // helpers.mjs reads KVD_BIN when imported: pick the binary first.
  const rel = path.join(root, 'target', 'release', 'kvd')
  if (!process.env.KVD_BIN && fs.existsSync(rel)) process.env.KVD_BIN = rel
  const { Server, KVD_BIN } = await import(path.join(pkg, 'test', 'helpers.mjs'))
  const s = await new Server('kvd').start()
  return { server: s, bin: KVD_BIN }
}

const workloads = [
  ['seqPut', 'sequential put'],
  ['seqGet', 'sequential get'],
  ['concPut', `put, ${CONC} concurrent`],
  ['concGet', `get, ${CONC} concurrent`],
  ['range', `get prefix (${RANGE_KEYS} keys)`],
  ['watch', 'watch events delivered'],
]

async function main() {
  let server = null
  let endpoint = endpointArg
  let bin = 'external'
  if (!endpoint) {
    ;({ server, bin } = await startKvd())
    endpoint = server.endpoint
  }
  const best = { kvclient: {}, etcd3: {} }
  const loads = [loadAverage()]
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? [kvclient, etcd3] : [etcd3, kvclient]
      console.error(`round ${round + 1}/${ROUNDS}: ${order.map((m) => m.name).join(', ')}; load average ${loadAverage()}`)
      for (const make of order) {
        const client = make(endpoint)
        await client.put('bench/warmup', 'x')
        const r = await runOne(client, round)
        await client.close()
        loads.push(loadAverage())
        for (const [k] of workloads) {
          if (!best[client.name][k] || r[k].opsPerSec > best[client.name][k].opsPerSec) best[client.name][k] = r[k]
        }
      }
    }
  } finally {
    await server?.stop()
  }
  const rows = workloads.map(([k, label]) => {
    const a = best.kvclient[k]
    const b = best.etcd3[k]
    return `| ${label} | ${a.opsPerSec.toFixed(0)} | ${b.opsPerSec.toFixed(0)} | ${(a.opsPerSec / b.opsPerSec).toFixed(2)}x | ${a.cpuPerOpUs.toFixed(1)} | ${b.cpuPerOpUs.toFixed(1)} |`
  })
  const table = [
    `Node ${process.version}, kvd ${path.relative(root, bin) || bin}, data dir on ${endpointArg ? 'external server' : process.env.DATA_DIR_ON || 'tmpfs'}, ${quick ? 'quick' : 'full'} run (best of ${ROUNDS}), ${new Date().toISOString()}`,
    `load average (1, 5, 15 min) at start and after each client: ${loads.join(' | ')}`,
    '',
    '| workload | kvclient ops/s | etcd3 ops/s | kvclient / etcd3 | kvclient CPU µs/op | etcd3 CPU µs/op |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n')
  console.log(table)
  return table
}

const table = await main()
if (process.env.BENCH_OUT) fs.writeFileSync(process.env.BENCH_OUT, table + '\n')
