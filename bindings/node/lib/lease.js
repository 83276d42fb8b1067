'use strict'
// Leases with a keeper that emits 'lost'.
const { EventEmitter } = require('node:events')
const { call, callSync } = require('./util')
const { LeaseNotFoundError, KvError } = require('./errors')

/** Why a lease was lost, as an error to emit. */
function lostError(reason) {
  if (reason === 'LEASE_NOT_FOUND') return new LeaseNotFoundError('the server no longer has the lease')
  return new KvError('no keep-alive acknowledged within the lease TTL', reason ?? 'LEASE_LOST')
}

/**
 * A granted lease, kept alive in the background (unless `autoKeepAlive`
 * was false). Emits 'lost' (with a KvError: LEASE_NOT_FOUND when revoked
 * or expired, TTL_ELAPSED when no renewal got through within the TTL).
 */
class Lease extends EventEmitter {
  constructor(client, grant, keeper) {
    super()
    this._client = client
    /** The lease ID (decimal string: IDs use all 64 bits). */
    this.id = grant.id
    /** The TTL granted, in seconds. */
    this.ttl = grant.ttl
    this._keeper = keeper
    this._lostReason = null
    if (keeper) this._watchLoss(keeper)
  }

  async _watchLoss(keeper) {
    let reason
    try {
      reason = await call(keeper.lost())
    } catch (e) {
      reason = e.code
    }
    if (reason === null || this._keeper !== keeper) return
    this._lostReason = reason
    this._keeper = null
    this.emit('lost', lostError(reason))
  }

  /** Whether the keeper reported the lease lost. */
  get lost() {
    return this._lostReason !== null
  }

  /** Writes `key` attached to this lease. */
  put(key, value, options) {
    return this._client.put(key, value, { ...options, lease: this.id })
  }

  /** The remaining TTL (-1 once gone) and, with `keys`, the attached keys. */
  timeToLive(options) {
    return this._client.leaseTimeToLive(this.id, options)
  }

  /** Stops renewing; the lease then expires after its TTL. */
  close() {
    const k = this._keeper
    this._keeper = null
    if (k) callSync(() => k.close())
  }

  /** Revokes the lease now: its keys are deleted. */
  async revoke() {
    this.close()
    await this._client.leaseRevoke(this.id)
  }
}

module.exports = { Lease, lostError }
