'use strict'
// Locks and elections (etcd's concurrency layout: interoperable with
// `etcdctl lock` and `etcdctl elect`).
const { EventEmitter } = require('node:events')
const { call, callSync, checkSignal, onAbort, bytes } = require('./util')
const { lostError } = require('./lease')
const { AbortError } = require('./errors')

/** Runs a native request object (`acquire()`/`campaign()`) under an AbortSignal. */
async function runCancellable(req, method, signal) {
  checkSignal(signal)
  const stop = onAbort(signal, () => req.cancel())
  try {
    return await call(req[method]())
  } catch (e) {
    if (e.code === 'ABORTED' && signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
    throw e
  } finally {
    stop()
  }
}

/**
 * A held lock. `fencingToken` strictly increases from one holder to the
 * next: pass it to storage that must refuse an older holder's writes.
 * Emits 'lost' if the lock's session lease is lost while held.
 */
class Lock extends EventEmitter {
  constructor(n) {
    super()
    this._n = n
    this.key = n.key
    this.fencingToken = n.fencingToken
    this.revision = n.revision
    this.lease = n.lease
    this._released = false
    this.on('newListener', (name) => {
      if (name === 'lost' && !this._watching) {
        this._watching = true
        this._watchLoss()
      }
    })
  }
  async _watchLoss() {
    let reason
    try {
      reason = await call(this._n.lost())
    } catch (e) {
      reason = e.code
    }
    if (reason !== null) this.emit('lost', lostError(reason))
  }
  /** Releases the lock. Releasing twice is a no-op. */
  async release() {
    this._released = true
    await call(this._n.release())
  }
}

async function acquireLock(native, name, options = {}) {
  const { signal, ttlSec, timeoutMs, tryOnly } = options
  checkSignal(signal)
  const req = callSync(() => native.lock(name, { ttlSec, timeoutMs, tryOnly }))
  return new Lock(await runCancellable(req, 'acquire', signal))
}

/** A leader as observed. */
class LeaderInfo {
  constructor(n) {
    this.key = n.key
    this.value = n.value
    this.createRevision = n.createRevision
    this.modRevision = n.modRevision
    this.lease = n.lease
  }
  get text() {
    return this.value.toString('utf8')
  }
}

/** Leadership won by `campaign`. */
class Leadership {
  constructor(n) {
    this._n = n
    this.key = n.key
    /** The create revision of the leader key: a fencing token. */
    this.revision = n.revision
    this.lease = n.lease
  }
  /** Announces a new value (ELECTION_NOT_LEADER if no longer leader). */
  async proclaim(value) {
    await call(this._n.proclaim(bytes(value, 'value')))
  }
  /** Resigns so the next candidate wins. */
  async resign() {
    await call(this._n.resign())
  }
}

/** Election `name`: campaign, leader, observe. */
class Election {
  constructor(native, name) {
    this._native = native
    this.name = name
  }
  /** Campaigns with `value`; resolves once leader. */
  async campaign(value, options = {}) {
    const { signal, ttlSec } = options
    checkSignal(signal)
    const native = await this._native()
    const req = callSync(() => native.election(this.name, bytes(value, 'value'), ttlSec))
    return new Leadership(await runCancellable(req, 'campaign', signal))
  }
  /** The current leader, or null when nobody campaigns. */
  async leader() {
    const native = await this._native()
    try {
      return new LeaderInfo(await call(native.electionLeader(this.name)))
    } catch (e) {
      if (e.code === 'ELECTION_NO_LEADER') return null
      throw e
    }
  }
  /** The leaders one after the other, as an async iterator. */
  async *observe(options = {}) {
    const { signal } = options
    checkSignal(signal)
    const native = await this._native()
    const obs = await call(native.observe(this.name))
    const stop = onAbort(signal, () => obs.cancel())
    try {
      for (;;) {
        const l = await call(obs.next())
        if (l === null) break
        yield new LeaderInfo(l)
      }
      if (signal?.aborted) throw new AbortError()
    } finally {
      obs.cancel()
      stop()
    }
  }
}

module.exports = { Lock, acquireLock, Election, Leadership, LeaderInfo }
