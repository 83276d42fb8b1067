'use strict'
const native = require('../index.js')
const { call, callSync, bytes, leaseId, prefixEnd } = require('./util')
const { range, unpackKvs, putResult, deleteResult, getOpts, putOpts, Txn } = require('./kv')
const { Watcher } = require('./watch')
const { Lease } = require('./lease')
const { acquireLock, Election } = require('./lock')
const { Registration, Subscription } = require('./discovery')
const { ClosedError, InvalidArgumentError } = require('./errors')

function connectOptions(o) {
  if (!o || !Array.isArray(o.endpoints) || o.endpoints.length === 0) {
    throw new InvalidArgumentError('options.endpoints must be a non-empty array of "host:port" or URLs')
  }
  const auth = o.auth ?? {}
  return {
    endpoints: o.endpoints,
    username: auth.username ?? o.username,
    password: auth.password ?? o.password,
    tls: o.tls
      ? {
          ca: o.tls.ca,
          cert: o.tls.cert,
          key: o.tls.key,
          serverName: o.tls.serverName,
          insecureSkipVerify: o.tls.insecureSkipVerify,
        }
      : undefined,
    connectTimeoutMs: o.connectTimeoutMs,
    requestTimeoutMs: o.requestTimeoutMs,
    retryInitialBackoffMs: o.retry?.initialBackoffMs,
    retryMaxBackoffMs: o.retry?.maxBackoffMs,
    retryMaxAttempts: o.retry?.maxAttempts,
  }
}

function watchOpts(o, extra) {
  return {
    startRevision: o?.startRevision,
    prevKv: o?.prevKv,
    progressNotify: o?.progressNotify,
    noPut: o?.noPut,
    noDelete: o?.noDelete,
    ...extra,
  }
}

/**
 * A client of a kv or etcd cluster. The constructor returns at once;
 * connecting (and authenticating) happens in the background and its
 * failure is reported by the first call. `Client.connect()` waits for it.
 */
class Client {
  constructor(options) {
    this._connecting = call(native.connect(connectOptions(options)))
    this._connecting.catch(() => {})
    this._native = null
    this._closed = false
    this._connecting.then((n) => {
      this._native = n
      if (this._closed) n.close()
    }, () => {})
  }

  /** Connects and waits until ready (a wrong password fails here). */
  static async connect(options) {
    const c = new Client(options)
    await c._n()
    return c
  }

  async _n() {
    if (this._closed) throw new ClosedError('the client was closed')
    return this._native ?? (await this._connecting)
  }

  // --- KV ---

  /** The key-value at `key`, or null. */
  async get(key, options) {
    const n = await this._n()
    const r = await call(n.get(bytes(key), getOpts(options)))
    return r.kvs.count === 0 ? null : unpackKvs(r.kvs)[0]
  }

  /** Every key starting with `prefix`, with the read's revision. */
  async getPrefix(prefix, options) {
    const n = await this._n()
    return range(await call(n.get(bytes(prefix), { ...getOpts(options), prefix: true })))
  }

  /** The keys in [start, end), with the read's revision. */
  async getRange(start, end, options) {
    const n = await this._n()
    return range(await call(n.get(bytes(start), { ...getOpts(options), end: bytes(end) })))
  }

  /** Every key >= `key`, with the read's revision. */
  async getFromKey(key, options) {
    const n = await this._n()
    return range(await call(n.get(bytes(key), { ...getOpts(options), fromKey: true })))
  }

  /** Writes `key`. */
  async put(key, value, options) {
    const n = await this._n()
    return putResult(await call(n.put(bytes(key), bytes(value, 'value'), putOpts(options))))
  }

  /** Deletes `key`. */
  async delete(key, options) {
    const n = await this._n()
    return deleteResult(await call(n.delete(bytes(key), { prevKv: options?.prevKv })))
  }

  /** Deletes every key starting with `prefix`. */
  async deletePrefix(prefix, options) {
    const n = await this._n()
    return deleteResult(await call(n.delete(bytes(prefix), { prefix: true, prevKv: options?.prevKv })))
  }

  /** Deletes the keys in [start, end). */
  async deleteRange(start, end, options) {
    const n = await this._n()
    return deleteResult(await call(n.delete(bytes(start), { end: bytes(end), prevKv: options?.prevKv })))
  }

  /** A transaction: `client.txn().when(...).andThen(...).orElse(...).commit()`. */
  txn() {
    return new Txn(async (spec) => call((await this._n()).txn(spec)))
  }

  /** Compacts the history up to `revision`. */
  async compact(revision, options) {
    const n = await this._n()
    return call(n.compact(revision, options?.physical))
  }

  /** The answering member's status. */
  async status() {
    return call((await this._n()).status())
  }

  /** The cluster's members. */
  async members() {
    return call((await this._n()).members())
  }

  // --- watches ---

  /** Watches `key` (or a range with `options.end`). */
  watch(key, options) {
    const extra = options?.end !== undefined ? { end: bytes(options.end) } : {}
    return new Watcher(async () => call((await this._n()).watch(bytes(key), watchOpts(options, extra))), options?.signal)
  }

  /** Watches every key starting with `prefix`. */
  watchPrefix(prefix, options) {
    return new Watcher(
      async () => call((await this._n()).watch(bytes(prefix), watchOpts(options, { prefix: true }))),
      options?.signal,
    )
  }

  // --- leases ---

  /** Grants a lease of `ttlSec` seconds, kept alive unless `autoKeepAlive: false`. */
  async lease(ttlSec, options) {
    const n = await this._n()
    const grant = await call(n.leaseGrant(ttlSec))
    let keeper = null
    if (options?.autoKeepAlive !== false) {
      try {
        keeper = await call(n.leaseKeeper(grant.id))
      } catch (e) {
        await call(n.leaseRevoke(grant.id)).catch(() => {})
        throw e
      }
    }
    return new Lease(this, grant, keeper)
  }

  /** Revokes lease `id` (its keys are deleted). */
  async leaseRevoke(id) {
    await call((await this._n()).leaseRevoke(leaseId(id)))
  }

  /** The remaining TTL of lease `id` (-1 when gone). */
  async leaseTimeToLive(id, options) {
    return call((await this._n()).leaseTimeToLive(leaseId(id), options?.keys))
  }

  /** The IDs of every lease. */
  async leases() {
    return call((await this._n()).leases())
  }

  // --- locks and elections ---

  /** Acquires lock `name`; waits unless `tryOnly`. */
  async lock(name, options) {
    return acquireLock(await this._n(), name, options)
  }

  /** Runs `fn(lock)` holding lock `name`, releasing it afterwards. */
  async withLock(name, options, fn) {
    if (typeof options === 'function') {
      fn = options
      options = {}
    }
    const lock = await this.lock(name, options)
    try {
      return await fn(lock)
    } finally {
      await lock.release()
    }
  }

  /** Election `name`. */
  election(name) {
    return new Election(() => this._n(), name)
  }

  // --- discovery ---

  /** Registers an instance of `service` at `addr` (or an array of addresses). */
  async register(service, addr, options = {}) {
    const n = await this._n()
    const addrs = Array.isArray(addr) ? addr : [addr]
    const opts = {
      service,
      addrs,
      id: options.id,
      metadata: options.metadata,
      version: options.version,
      health: options.health,
      ttlSec: options.ttlSec,
      namespace: options.namespace,
      tags: options.tags,
      checks: options.checks,
    }
    // callSync: napi checks the options' types synchronously (a wrong type
    // becomes InvalidArgumentError, not napi's bare Error).
    return new Registration(await call(callSync(() => n.register(opts))))
  }

  /** Subscribes to the live instances of `service` (filtered by `tags`, `metadata`, `health`). */
  async subscribe(service, options) {
    const n = await this._n()
    return new Subscription(await call(callSync(() => n.subscribe(service, options?.namespace, serviceFilter(options)))))
  }

  /** The instances of `service` registered now (filtered by `tags`, `metadata`, `health`). */
  async list(service, options) {
    const n = await this._n()
    return call(callSync(() => n.list(service, options?.namespace, serviceFilter(options))))
  }

  /**
   * Closes the client: every watch, keeper, lock wait and subscription of
   * it ends, later calls fail with ClosedError, and the process can exit.
   */
  async close() {
    this._closed = true
    if (this._native) callSync(() => this._native.close())
  }
}

/** The native filter of `list`/`subscribe` options. */
function serviceFilter(o) {
  if (!o) return undefined
  return { tags: o.tags, metadata: o.metadata, health: o.health }
}

module.exports = { Client, prefixEnd }
