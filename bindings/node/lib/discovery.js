'use strict'
// Service registration and subscriptions.
const { EventEmitter } = require('node:events')
const { call, callSync } = require('./util')

const REG_EVENTS = new Set(['registered', 'lost', 'retryFailed', 'reregistered', 'health', 'event'])

/**
 * A registered service instance, kept alive by a heartbeat and written
 * again by itself after its lease is lost. Emits 'registered', 'lost',
 * 'retryFailed', 'reregistered', 'health' (and 'event' for each).
 */
class Registration extends EventEmitter {
  constructor(n) {
    super()
    this._n = n
    this._pumping = false
    this.on('newListener', (name) => {
      if (REG_EVENTS.has(name) && !this._pumping) {
        this._pumping = true
        queueMicrotask(() => this._pump())
      }
    })
  }
  /** The registry key of the entry. */
  get key() {
    return this._n.key
  }
  /** The lease the entry is on now (decimal). */
  get lease() {
    return this._n.lease
  }
  /** The instance as last written (tags, health and check states included). */
  get instance() {
    return this._n.instance
  }
  /**
   * The states of the health checks this registration runs, by name, as of
   * its last event or TTL report (see index.d.ts).
   */
  get checks() {
    return this._n.instance.checks
  }
  async _pump() {
    for (;;) {
      let ev
      try {
        ev = await call(this._n.nextEvent())
      } catch (e) {
        this.emit('error', e)
        return
      }
      if (ev === null) return
      const { type, ...rest } = ev
      this.emit(type, rest)
      this.emit('event', ev)
    }
  }
  /** Sets the health ('passing' | 'warning' | 'critical') and rewrites the entry. */
  async setHealth(health) {
    await call(this._n.setHealth(health))
  }
  /**
   * Reports TTL check `name` passing (`note` becomes its output); the
   * report holds for the check's `ttlMs`, then the check turns critical.
   */
  async passTtl(name, note) {
    await call(this._n.updateTtl(name, 'passing', note))
  }
  /** Reports TTL check `name` warning: see passTtl. */
  async warnTtl(name, note) {
    await call(this._n.updateTtl(name, 'warning', note))
  }
  /** Reports TTL check `name` critical: see passTtl. */
  async failTtl(name, note) {
    await call(this._n.updateTtl(name, 'critical', note))
  }
  /** Deregisters now (revokes the lease, deleting the entry). */
  async close() {
    await call(this._n.close())
  }
}

const SUB_EVENTS = new Set(['added', 'updated', 'removed', 'change'])

/**
 * The live instances of a service (those passing its filter, if any): `instances` now, and events ('added',
 * 'updated', 'removed', and 'change' for each) or an async iterator of
 * `{ type, instance }` (the instances present at start come first, as
 * 'added'). Use one or the other.
 */
class Subscription extends EventEmitter {
  constructor(n) {
    super()
    this._n = n
    this._mode = null
    this.on('newListener', (name) => {
      if (SUB_EVENTS.has(name) && this._mode === null) {
        this._mode = 'emit'
        queueMicrotask(() => this._pump())
      }
    })
  }
  /** The instances live now: it may be ahead of events not yet delivered. */
  get instances() {
    return callSync(() => this._n.current())
  }
  /** The store revision `instances` reflects. */
  get revision() {
    return this._n.revision
  }
  async _pump() {
    for (;;) {
      let ev
      try {
        ev = await call(this._n.nextEvent())
      } catch (e) {
        this.emit('error', e)
        return
      }
      if (ev === null) return
      this.emit(ev.type, ev.instance)
      this.emit('change', ev)
    }
  }
  async *[Symbol.asyncIterator]() {
    if (this._mode !== null) throw new TypeError('this subscription is already being consumed')
    this._mode = 'iterate'
    for (;;) {
      const ev = await call(this._n.nextEvent())
      if (ev === null) return
      yield ev
    }
  }
  /** Stops the subscription (an iteration ends). */
  close() {
    this._n.close()
  }
}

module.exports = { Registration, Subscription }
