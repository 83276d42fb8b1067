'use strict'
// Error classes with a stable `code`. The native layer reports errors as
// `[CODE] message`; toKvError turns them into these.

class KvError extends Error {
  constructor(message, code, options) {
    super(message, options)
    this.name = 'KvError'
    this.code = code
  }
}

const classes = {}
function define(name, code, extra) {
  const C = {
    [name]: class extends (extra ?? KvError) {
      constructor(message, options) {
        super(message, code, options)
        this.name = name
      }
    },
  }[name]
  classes[code] = C
  return C
}

const UnavailableError = define('UnavailableError', 'UNAVAILABLE')
const TimeoutError = define('TimeoutError', 'TIMEOUT')
const LeaseNotFoundError = define('LeaseNotFoundError', 'LEASE_NOT_FOUND')
const PermissionDeniedError = define('PermissionDeniedError', 'PERMISSION_DENIED')
const AuthFailedError = define('AuthFailedError', 'AUTH_FAILED')
const InvalidArgumentError = define('InvalidArgumentError', 'INVALID_ARGUMENT')
const FutureRevisionError = define('FutureRevisionError', 'FUTURE_REV')
const ClosedError = define('ClosedError', 'CLOSED')
const LockedError = define('LockedError', 'LOCKED')
const SessionExpiredError = define('SessionExpiredError', 'SESSION_EXPIRED')
const NotLeaderError = define('NotLeaderError', 'ELECTION_NOT_LEADER')
const NoLeaderError = define('NoLeaderError', 'ELECTION_NO_LEADER')

class CompactedError extends KvError {
  constructor(message, compactRevision, options) {
    super(message, 'COMPACTED', options)
    this.name = 'CompactedError'
    /** The oldest revision still available, when the server said. */
    this.compactRevision = compactRevision
  }
}

class AbortError extends KvError {
  constructor(message = 'The operation was aborted', options) {
    super(message, 'ABORTED', options)
    this.name = 'AbortError'
  }
}

/** Any error thrown by a native call, as a KvError subclass. */
function toKvError(err) {
  if (err instanceof KvError) return err
  const msg = typeof err?.message === 'string' ? err.message : String(err)
  const m = /^\[([A-Z_]+)\] ([\s\S]*)$/.exec(msg)
  if (!m) {
    // napi's own argument checks (wrong type from JS).
    if (err && typeof err.code === 'string' && /Arg|Expected/.test(err.code)) {
      return new InvalidArgumentError(msg, { cause: err })
    }
    if (err instanceof TypeError) return new InvalidArgumentError(msg, { cause: err })
    return new KvError(msg, 'INTERNAL', { cause: err })
  }
  const [, code, text] = m
  if (code === 'COMPACTED') {
    const rev = /compact revision (\d+)/.exec(text)
    return new CompactedError(text, rev ? Number(rev[1]) : undefined)
  }
  if (code === 'ABORTED') return new AbortError(text)
  const C = classes[code]
  return C ? new C(text) : new KvError(text, code)
}

module.exports = {
  KvError,
  UnavailableError,
  TimeoutError,
  LeaseNotFoundError,
  PermissionDeniedError,
  AuthFailedError,
  InvalidArgumentError,
  FutureRevisionError,
  ClosedError,
  LockedError,
  SessionExpiredError,
  NotLeaderError,
  NoLeaderError,
  CompactedError,
  AbortError,
  toKvError,
}
