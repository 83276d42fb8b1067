'use strict'
// Key-values and the transaction builder.
const { bytes, leaseId } = require('./util')
const { InvalidArgumentError } = require('./errors')

/** One key-value as stored. `value` is a Buffer; `text` decodes it as UTF-8. */
class KeyValue {
  constructor(n) {
    this.key = n.key
    this.value = n.value
    this.createRevision = n.createRevision
    this.modRevision = n.modRevision
    this.version = n.version
    this.lease = n.lease
  }
  /** The value as a UTF-8 string. */
  get text() {
    return this.value.toString('utf8')
  }
  /** The key as a UTF-8 string. */
  get keyText() {
    return this.key.toString('utf8')
  }
  /** The value parsed as JSON. */
  json() {
    return JSON.parse(this.text)
  }
}

function kv(n) {
  return n ? new KeyValue(n) : null
}

/** Numbers per key-value in a packed read (see src/convert.rs). */
const KV_STRIDE = 7

/** A lease ID from its high and low 32 bits (decimal string, exact). */
function leaseString(hi, lo) {
  if (hi === 0) return String(lo)
  return ((BigInt(hi) << 32n) | BigInt(lo)).toString()
}

/**
 * One key-value at `m[i..i+7]`, its bytes at `data[off..]`; returns
 * [kv, next offset]. Key and value are views into `data` (no copy).
 */
function unpackKv(m, i, data, off) {
  const kl = m[i]
  const vl = m[i + 1]
  const kv = Object.create(KeyValue.prototype)
  kv.key = data.subarray(off, off + kl)
  kv.value = data.subarray(off + kl, off + kl + vl)
  kv.createRevision = m[i + 2]
  kv.modRevision = m[i + 3]
  kv.version = m[i + 4]
  kv.lease = m[i + 5] === 0 && m[i + 6] === 0 ? '0' : leaseString(m[i + 5], m[i + 6])
  return [kv, off + kl + vl]
}

/** The key-values of a native PackedKvs, in one pass into a sized array. */
function unpackKvs({ count, data, meta }) {
  const out = new Array(count)
  let off = 0
  for (let n = 0; n < count; n++) [out[n], off] = unpackKv(meta, n * KV_STRIDE, data, off)
  return out
}

function header(h) {
  return h ?? null
}

function range(r) {
  return {
    kvs: unpackKvs(r.kvs),
    count: r.count,
    more: r.more,
    revision: r.header?.revision ?? 0,
    header: header(r.header),
  }
}

function putResult(r) {
  return { revision: r.header?.revision ?? 0, prevKv: kv(r.prevKv), header: header(r.header) }
}

function deleteResult(r) {
  return {
    revision: r.header?.revision ?? 0,
    deleted: r.deleted,
    prevKvs: r.prevKvs.map(kv),
    header: header(r.header),
  }
}

function getOpts(o) {
  if (!o) return undefined
  const { revision, serializable, limit, keysOnly, countOnly, sort, minModRevision, maxModRevision, minCreateRevision, maxCreateRevision } = o
  return {
    revision,
    serializable,
    limit,
    keysOnly,
    countOnly,
    sortTarget: sort?.target,
    sortOrder: sort?.order,
    minModRevision,
    maxModRevision,
    minCreateRevision,
    maxCreateRevision,
  }
}

function putOpts(o) {
  if (!o) return undefined
  return { lease: leaseId(o.lease), prevKv: o.prevKv, ignoreValue: o.ignoreValue, ignoreLease: o.ignoreLease }
}

const OPS = new Set(['==', '!=', '<', '>'])

function cmp(target, key, op, operand) {
  if (!OPS.has(op)) throw new InvalidArgumentError(`compare operator must be one of == != < >, not ${op}`)
  const c = { key: bytes(key), target, op }
  if (target === 'value') c.value = bytes(operand, 'value')
  else if (target === 'lease') c.lease = leaseId(operand)
  else {
    if (typeof operand !== 'number') throw new InvalidArgumentError(`compare on ${target} needs a number`)
    c.number = operand
  }
  return c
}

/** Guards of a transaction: `Compare.value('k', '==', 'v')`, ... */
const Compare = {
  value: (key, op, value) => cmp('value', key, op, value),
  version: (key, op, version) => cmp('version', key, op, version),
  createRevision: (key, op, rev) => cmp('create', key, op, rev),
  modRevision: (key, op, rev) => cmp('mod', key, op, rev),
  lease: (key, op, lease) => cmp('lease', key, op, lease),
}

/** Operations of a transaction: `Op.put('k', 'v')`, `Op.get('k')`, `Op.delete('k')`. */
const Op = {
  get: (key, options) => ({ kind: 'get', key: bytes(key), get: getOpts(options) }),
  getPrefix: (prefix, options) => ({ kind: 'get', key: bytes(prefix), get: { ...getOpts(options), prefix: true } }),
  put: (key, value, options) => ({ kind: 'put', key: bytes(key), value: bytes(value, 'value'), put: putOpts(options) }),
  delete: (key, options) => ({ kind: 'delete', key: bytes(key), delete: { prevKv: options?.prevKv } }),
  deletePrefix: (prefix, options) => ({ kind: 'delete', key: bytes(prefix), delete: { prefix: true, prevKv: options?.prevKv } }),
}

/** `client.txn().when(...).andThen(...).orElse(...).commit()`. */
class Txn {
  constructor(run) {
    this._run = run
    this._spec = { compares: [], success: [], failure: [] }
  }
  /** Adds guards (all must hold for the `andThen` branch to run). */
  when(...compares) {
    this._spec.compares.push(...compares.flat())
    return this
  }
  /** Operations run when every guard holds. */
  andThen(...ops) {
    this._spec.success.push(...ops.flat())
    return this
  }
  /** Operations run otherwise. */
  orElse(...ops) {
    this._spec.failure.push(...ops.flat())
    return this
  }
  /** Runs the transaction. */
  async commit() {
    const r = await this._run(this._spec)
    return {
      succeeded: r.succeeded,
      revision: r.header?.revision ?? 0,
      header: header(r.header),
      responses: r.responses.map((x) => {
        if (x.kind === 'get') return { kind: 'get', ...range(x.get) }
        if (x.kind === 'put') return { kind: 'put', ...putResult(x.put) }
        return { kind: 'delete', ...deleteResult(x.delete) }
      }),
    }
  }
}

module.exports = { KeyValue, unpackKv, unpackKvs, kv, range, putResult, deleteResult, getOpts, putOpts, Compare, Op, Txn }
