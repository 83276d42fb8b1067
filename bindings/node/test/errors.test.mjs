// A panic in the native layer is an error with code INTERNAL, never a crash.
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { KvError } from '../lib/index.mjs'
import { toKvError } from '../lib/errors.js'

const native = createRequire(import.meta.url)('../index.js')

describe('panics', () => {
  it('turns a panic in an async call into a rejected promise', async () => {
    const err = await native.panicProbeAsync().then(() => null, toKvError)
    assert.ok(err instanceof KvError)
    assert.equal(err.code, 'INTERNAL')
    assert.match(err.message, /panic probe \(async\)/)
  })

  it('turns a panic in a sync call into a thrown error', () => {
    let err = null
    try {
      native.panicProbeSync()
    } catch (e) {
      err = toKvError(e)
    }
    assert.ok(err instanceof KvError)
    assert.equal(err.code, 'INTERNAL')
  })
})
