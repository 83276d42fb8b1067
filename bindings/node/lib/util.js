'use strict'
const { toKvError, AbortError, InvalidArgumentError } = require('./errors')

/** Awaits a native promise, rethrowing its error as a KvError subclass. */
async function call(promise) {
  try {
    return await promise
  } catch (e) {
    throw toKvError(e)
  }
}

/** Runs a synchronous native call, rethrowing as a KvError subclass. */
function callSync(fn) {
  try {
    return fn()
  } catch (e) {
    throw toKvError(e)
  }
}

/** Throws an AbortError if `signal` is already aborted. */
function checkSignal(signal) {
  if (signal?.aborted) throw new AbortError()
}

/**
 * Calls `onAbort` when `signal` aborts; returns a function that stops
 * listening (call it once the operation is over so nothing leaks).
 */
function onAbort(signal, onAbortFn) {
  if (!signal) return () => {}
  const handler = () => onAbortFn()
  signal.addEventListener('abort', handler, { once: true })
  return () => signal.removeEventListener('abort', handler)
}

/** A key or value for the native layer: strings and Buffers pass as they are. */
function bytes(v, what = 'key') {
  if (typeof v === 'string' || Buffer.isBuffer(v)) return v
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  throw new InvalidArgumentError(`${what} must be a string, Buffer or Uint8Array`)
}

/** A lease ID for the native layer (decimal string). */
function leaseId(v) {
  if (v === undefined || v === null) return undefined
  if (typeof v === 'object' && v !== null && 'id' in v) return String(v.id)
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'string') return String(v)
  throw new InvalidArgumentError('lease must be a Lease, or an ID as string, bigint or number')
}

/** The smallest key after every key starting with `prefix` (etcd's prefix end). */
function prefixEnd(prefix) {
  const b = Buffer.from(prefix)
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i] < 0xff) {
      const end = Buffer.from(b.subarray(0, i + 1))
      end[i]++
      return end
    }
  }
  return Buffer.from([0])
}

module.exports = { call, callSync, checkSignal, onAbort, bytes, leaseId, prefixEnd }
