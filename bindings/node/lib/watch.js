'use strict'
// Watches as async iterators and EventEmitters over NativeWatch.next().
const { EventEmitter } = require('node:events')
const { call, onAbort } = require('./util')
const { unpackKv } = require('./kv')
const { AbortError, KvError } = require('./errors')

/** One change: `type` is 'put' or 'delete'; `kv` the key-value after it. */
class WatchEvent {
  constructor(type, kv, prevKv) {
    this.type = type
    this.kv = kv
    this.prevKv = prevKv
  }
  get key() {
    return this.kv.key
  }
  get value() {
    return this.kv.value
  }
  /** The revision of the change. */
  get revision() {
    return this.kv.modRevision
  }
}

const STRIDE = 16

/** The events of a native PackedBatch (see src/watch.rs). */
function unpack(batch) {
  const { count, data, meta } = batch
  const events = new Array(count)
  let off = 0
  for (let e = 0; e < count; e++) {
    const i = e * STRIDE
    let kv
    let prev = null
    ;[kv, off] = unpackKv(meta, i + 2, data, off)
    if (meta[i + 1] === 1) [prev, off] = unpackKv(meta, i + 9, data, off)
    events[e] = new WatchEvent(meta[i] === 0 ? 'put' : 'delete', kv, prev)
  }
  return events
}

const EVENT_NAMES = new Set(['put', 'delete', 'event', 'batch', 'progress', 'resumed'])

/**
 * A watch. Iterate it (`for await (const ev of watcher)`) or listen to it
 * ('put', 'delete', 'event', 'batch', 'progress', 'resumed', 'error', 'end'),
 * not both. After a disconnect it resumes by itself from the revision after
 * the last event delivered (emitting 'resumed' with that revision): no event
 * is lost or repeated. If that history was compacted, it fails with a
 * CompactedError.
 */
class Watcher extends EventEmitter {
  constructor(start, signal) {
    super()
    this._signal = signal
    this._cancelled = false
    this._abortReason = null
    this._mode = null
    this._native = null
    this._ready = start().then(
      (n) => {
        this._native = n
        if (this._cancelled) n.cancel()
        return n
      },
      (e) => {
        throw e
      },
    )
    // A failure surfaces on iteration or as 'error'; never unhandled.
    this._ready.catch(() => {})
    this._unlisten = onAbort(signal, () => {
      this._abortReason = new AbortError()
      this.cancel()
    })
    if (signal?.aborted) {
      this._abortReason = new AbortError()
      this._cancelled = true
    }
    this.on('newListener', (name) => {
      if (EVENT_NAMES.has(name) && this._mode === null) {
        this._mode = 'emit'
        queueMicrotask(() => this._pump())
      }
    })
  }

  /** Resolves once the server has confirmed the watch. */
  async ready() {
    await this._ready
    return this
  }

  /** The server's watch ID when it was created. */
  get watchId() {
    return this._native?.watchId
  }

  /** Whether the watch was cancelled. */
  get cancelled() {
    return this._cancelled
  }

  /** Stops the watch; an iteration ends and 'end' is emitted. */
  cancel() {
    this._cancelled = true
    this._native?.cancel()
  }

  async _next() {
    const n = await this._ready
    return call(n.next())
  }

  async _pump() {
    try {
      for (;;) {
        const batch = await this._next()
        if (batch === null) break
        if (batch.resumedAt != null) {
          this.emit('resumed', batch.resumedAt)
          continue
        }
        if (batch.count === 0) {
          this.emit('progress', batch.revision)
          continue
        }
        const events = unpack(batch)
        this.emit('batch', { revision: batch.revision, events })
        for (const ev of events) {
          this.emit(ev.type, ev)
          this.emit('event', ev)
        }
      }
      if (this._abortReason) this.emit('error', this._abortReason)
    } catch (e) {
      if (this.listenerCount('error') > 0) this.emit('error', e)
      else process.emitWarning(`kvclient watch failed without an 'error' listener: ${e.message}`)
    } finally {
      this._unlisten()
      this.emit('end')
    }
  }

  async *[Symbol.asyncIterator]() {
    if (this._mode === 'emit') throw new KvError('this watcher is consumed through events', 'INVALID_ARGUMENT')
    if (this._mode === 'iterate') throw new KvError('this watcher is already being iterated', 'INVALID_ARGUMENT')
    this._mode = 'iterate'
    try {
      for (;;) {
        const batch = await this._next()
        if (batch === null) break
        for (const ev of unpack(batch)) yield ev
      }
      if (this._abortReason) throw this._abortReason
    } finally {
      // Leaving the loop early (break, throw) cancels the watch.
      this.cancel()
      this._unlisten()
    }
  }
}

module.exports = { Watcher, WatchEvent }
