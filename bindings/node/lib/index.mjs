// ES module entry: the same objects as the CommonJS entry.
import cjs from './index.js'

export const {
  Client,
  KeyValue,
  Compare,
  Op,
  Watcher,
  WatchEvent,
  Lease,
  Lock,
  Election,
  Leadership,
  LeaderInfo,
  Registration,
  Subscription,
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
} = cjs
export default cjs
