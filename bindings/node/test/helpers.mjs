// Real servers for the tests: kvd (this workspace's target/debug/kvd, or
// $KVD_BIN) and Debian's etcd, each a child process on free 127.0.0.1
// ports with its own temporary data dir, killed by stop().
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from '../lib/index.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.join(here, '..', '..', '..')
export const KVD_BIN = process.env.KVD_BIN ?? path.join(repoRoot, 'target', 'debug', 'kvd')
export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd'

/** The server kinds to run the shared suites against. */
export function kinds() {
  const out = ['kvd']
  if (fs.existsSync(ETCD_BIN)) out.push('etcd')
  return out
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

export class Server {
  constructor(kind, extraArgs = [], scheme = 'http') {
    this.kind = kind
    this.extraArgs = extraArgs
    this.scheme = scheme
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `kvclient-node-${kind}-`))
    this.child = null
  }

  get endpoint() {
    return `${this.scheme}://127.0.0.1:${this.clientPort}`
  }

  /** Starts on fresh ports (retrying if a port was taken meanwhile). */
  async start(ready = (s) => s.waitReady()) {
    for (let attempt = 1; ; attempt++) {
      this.clientPort = await freePort()
      this.peerPort = await freePort()
      this.spawn()
      try {
        await ready(this)
        return this
      } catch (e) {
        this.kill()
        if (attempt >= 5 || !/in use/.test(this.log())) throw new Error(`${this.kind} did not start: ${e.message}\n${this.log()}`)
      }
    }
  }

  spawn() {
    const c = this.endpoint
    const p = `http://127.0.0.1:${this.peerPort}`
    const bin = this.kind === 'kvd' ? KVD_BIN : ETCD_BIN
    const log = fs.openSync(path.join(this.dir, 'server.log'), 'a')
    this.child = spawn(
      bin,
      [
        '--name=n1',
        `--data-dir=${path.join(this.dir, 'data')}`,
        `--listen-client-urls=${c}`,
        `--advertise-client-urls=${c}`,
        `--listen-peer-urls=${p}`,
        `--initial-advertise-peer-urls=${p}`,
        `--initial-cluster=n1=${p}`,
        ...this.extraArgs,
      ],
      { stdio: ['ignore', log, log] },
    )
    fs.closeSync(log)
    this.exited = new Promise((resolve) => this.child.once('exit', resolve))
  }

  log() {
    try {
      return fs.readFileSync(path.join(this.dir, 'server.log'), 'utf8').split('\n').slice(-30).join('\n')
    } catch {
      return ''
    }
  }

  /** Waits until the server answers with a leader. */
  async waitReady(clientOptions = {}) {
    const client = new Client({ endpoints: [this.endpoint], ...fast, ...clientOptions })
    try {
      const deadline = Date.now() + 30_000
      for (;;) {
        if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error('exited')
        try {
          const st = await client.status()
          if (st.leader !== '0') {
            await client.get('kvclient-probe')
            return
          }
        } catch (e) {
          if (Date.now() > deadline) throw e
        }
        if (Date.now() > deadline) throw new Error('not ready in time')
        await sleep(50)
      }
    } finally {
      await client.close()
    }
  }

  /** A client with test timeouts. */
  client(options = {}) {
    return new Client({ endpoints: [this.endpoint], ...fast, ...options })
  }

  /** SIGKILLs the server and waits for it to exit. */
  async kill9() {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.kill('SIGKILL')
    await this.exited
  }

  kill() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL')
  }

  /** Restarts on the same data dir and ports. */
  async restart() {
    await this.kill9()
    for (let attempt = 1; ; attempt++) {
      this.spawn()
      try {
        await this.waitReady()
        return
      } catch (e) {
        this.kill()
        await this.exited
        if (attempt >= 20) throw new Error(`${this.kind} did not restart: ${e.message}\n${this.log()}`)
        await sleep(100)
      }
    }
  }

  async stop() {
    await this.kill9()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Short timeouts and fast retries for tests. */
export const fast = {
  connectTimeoutMs: 1000,
  requestTimeoutMs: 3000,
  retry: { initialBackoffMs: 10, maxBackoffMs: 200 },
}

export async function startServer(kind) {
  return new Server(kind).start()
}

/** Waits until `cond()` is truthy (polling), failing after `ms`. */
export async function eventually(cond, ms = 15_000, what = 'condition') {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(25)
  }
}

let counter = 0
/** A fresh key prefix per test. */
export function unique(name) {
  return `${name}-${process.pid}-${++counter}/`
}
