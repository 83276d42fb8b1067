// Types of kvclient's public API (hand-written; the native layer's
// generated types are in ../index.d.ts and are not part of the API).

import { EventEmitter } from 'node:events'

/** A key or value: strings are UTF-8 encoded. */
export type Bytes = string | Buffer | Uint8Array

/** A lease given to an option: the Lease, or its ID (decimal string, bigint or number). */
export type LeaseLike = Lease | string | bigint | number

export interface TlsOptions {
  /** CA certificates (PEM) to verify servers with; the system roots when absent. */
  ca?: string | Buffer
  /** Client certificate (PEM), with `key`, for mutual TLS. */
  cert?: string | Buffer
  /** Client private key (PEM). */
  key?: string | Buffer
  /** The name to verify the server certificate against. */
  serverName?: string
  /** Accept any server certificate (tests only). */
  insecureSkipVerify?: boolean
}

export interface ClientOptions {
  /** `host:port`, `http://host:port` or `https://host:port`. */
  endpoints: string[]
  /** etcd auth: a token is fetched on connect and renewed when it expires. */
  auth?: { username: string; password: string }
  tls?: TlsOptions
  connectTimeoutMs?: number
  /** Bounds all attempts of one call together (default 10 000). */
  requestTimeoutMs?: number
  retry?: { initialBackoffMs?: number; maxBackoffMs?: number; maxAttempts?: number }
}

export interface Header {
  clusterId: string
  memberId: string
  revision: number
  raftTerm: string
}

/** One key-value as stored. */
export declare class KeyValue {
  readonly key: Buffer
  readonly value: Buffer
  readonly createRevision: number
  readonly modRevision: number
  readonly version: number
  /** The lease ID ("0" = none). */
  readonly lease: string
  /** The value as UTF-8 text. */
  get text(): string
  /** The key as UTF-8 text. */
  get keyText(): string
  /** The value parsed as JSON. */
  json<T = unknown>(): T
}

export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value'
export type SortOrder = 'ascend' | 'descend' | 'none'

export interface GetOptions {
  /** Read at this revision (0 = latest). */
  revision?: number
  serializable?: boolean
  limit?: number
  keysOnly?: boolean
  countOnly?: boolean
  sort?: { target?: SortTarget; order?: SortOrder }
  minModRevision?: number
  maxModRevision?: number
  minCreateRevision?: number
  maxCreateRevision?: number
}

export interface RangeResult {
  kvs: KeyValue[]
  /** How many keys matched (more than `kvs.length` with a limit). */
  count: number
  more: boolean
  /** The store revision the read saw. */
  revision: number
  header: Header | null
}

export interface PutOptions {
  lease?: LeaseLike
  prevKv?: boolean
  ignoreValue?: boolean
  ignoreLease?: boolean
}

export interface PutResult {
  revision: number
  prevKv: KeyValue | null
  header: Header | null
}

export interface DeleteResult {
  revision: number
  deleted: number
  prevKvs: KeyValue[]
  header: Header | null
}

export type CompareOp = '==' | '!=' | '<' | '>'
/** A transaction guard, built with `Compare`. */
export interface TxnCompare {
  readonly target: 'value' | 'version' | 'create' | 'mod' | 'lease'
}
/** A transaction operation, built with `Op`. */
export interface TxnOp {
  readonly kind: 'get' | 'put' | 'delete'
}

export declare const Compare: {
  value(key: Bytes, op: CompareOp, value: Bytes): TxnCompare
  version(key: Bytes, op: CompareOp, version: number): TxnCompare
  createRevision(key: Bytes, op: CompareOp, revision: number): TxnCompare
  modRevision(key: Bytes, op: CompareOp, revision: number): TxnCompare
  lease(key: Bytes, op: CompareOp, lease: LeaseLike): TxnCompare
}

export declare const Op: {
  get(key: Bytes, options?: GetOptions): TxnOp
  getPrefix(prefix: Bytes, options?: GetOptions): TxnOp
  put(key: Bytes, value: Bytes, options?: PutOptions): TxnOp
  delete(key: Bytes, options?: { prevKv?: boolean }): TxnOp
  deletePrefix(prefix: Bytes, options?: { prevKv?: boolean }): TxnOp
}

export type TxnOpResult =
  | ({ kind: 'get' } & RangeResult)
  | ({ kind: 'put' } & PutResult)
  | ({ kind: 'delete' } & DeleteResult)

export interface TxnResult {
  /** Whether every guard held (the `andThen` branch ran). */
  succeeded: boolean
  revision: number
  header: Header | null
  responses: TxnOpResult[]
}

/** `client.txn().when(...).andThen(...).orElse(...).commit()`. */
export interface Txn {
  when(...compares: Array<TxnCompare | TxnCompare[]>): this
  andThen(...ops: Array<TxnOp | TxnOp[]>): this
  orElse(...ops: Array<TxnOp | TxnOp[]>): this
  commit(): Promise<TxnResult>
}

export interface StatusResult {
  header: Header | null
  version: string
  /** The leader's member ID ("0" = none). */
  leader: string
  dbSize: number
  raftIndex: string
  raftTerm: string
  errors: string[]
}

export interface Member {
  id: string
  name: string
  peerUrls: string[]
  clientUrls: string[]
  isLearner: boolean
}

export interface WatchOptions {
  /** Replay from this revision (default: from now). */
  startRevision?: number
  prevKv?: boolean
  progressNotify?: boolean
  noPut?: boolean
  noDelete?: boolean
  /** Aborting cancels the watch; an iteration then throws an AbortError. */
  signal?: AbortSignal
}

/** One change. */
export declare class WatchEvent {
  readonly type: 'put' | 'delete'
  /** The key-value after the change (for a delete: the key, an empty value and the delete's revision). */
  readonly kv: KeyValue
  /** The key-value before the change, with `prevKv: true`. */
  readonly prevKv: KeyValue | null
  get key(): Buffer
  get value(): Buffer
  get revision(): number
}

export interface WatcherEvents {
  put: [WatchEvent]
  delete: [WatchEvent]
  event: [WatchEvent]
  batch: [{ revision: number; events: WatchEvent[] }]
  progress: [number]
  /**
   * The watch was re-created after a disconnect and continues from this
   * revision (every earlier event was delivered; none is repeated).
   */
  resumed: [number]
  error: [KvError]
  end: []
}

/**
 * A watch: iterate it, or listen to it, not both. It resumes by itself after
 * disconnects without losing or repeating an event; if the history it needs
 * was compacted it fails with a CompactedError. Leaving a `for await` loop
 * cancels it.
 */
export declare class Watcher extends EventEmitter<WatcherEvents> implements AsyncIterable<WatchEvent> {
  /** Resolves once the server has confirmed the watch. */
  ready(): Promise<this>
  readonly watchId: number | undefined
  readonly cancelled: boolean
  cancel(): void
  [Symbol.asyncIterator](): AsyncIterator<WatchEvent>
}

export interface LeaseEvents {
  /** LeaseNotFoundError (revoked or expired), or code 'TTL_ELAPSED'. */
  lost: [KvError]
}

/** A granted lease, kept alive in the background unless `autoKeepAlive: false`. */
export declare class Lease extends EventEmitter<LeaseEvents> {
  /** The lease ID (decimal: IDs use all 64 bits). */
  readonly id: string
  readonly ttl: number
  readonly lost: boolean
  put(key: Bytes, value: Bytes, options?: Omit<PutOptions, 'lease'>): Promise<PutResult>
  timeToLive(options?: { keys?: boolean }): Promise<LeaseTtl>
  /** Stops renewing: the lease expires after its TTL. */
  close(): void
  /** Revokes now: its keys are deleted. */
  revoke(): Promise<void>
}

export interface LeaseTtl {
  id: string
  /** Seconds left (-1 once gone). */
  ttl: number
  grantedTtl: number
  keys: Buffer[]
}

export interface LockOptions {
  /** TTL of the lock's session lease (default 60 s): a crashed holder frees the lock after it. */
  ttlSec?: number
  /** Fail with TimeoutError (code 'TIMEOUT') after this long. */
  timeoutMs?: number
  /** Fail with LockedError at once instead of waiting. */
  tryOnly?: boolean
  signal?: AbortSignal
}

/** A held lock (etcd's `concurrency` layout, interoperable with `etcdctl lock`). */
export declare class Lock extends EventEmitter<LeaseEvents> {
  /** `<name>/<lease id in hex>`. */
  readonly key: string
  /** Strictly increases from one holder to the next. */
  readonly fencingToken: number
  readonly revision: number
  readonly lease: string
  /** Releases the lock; a second call does nothing. */
  release(): Promise<void>
}

export declare class LeaderInfo {
  readonly key: Buffer
  readonly value: Buffer
  readonly createRevision: number
  readonly modRevision: number
  readonly lease: string
  get text(): string
}

export declare class Leadership {
  readonly key: string
  /** The create revision of the leader key: a fencing token. */
  readonly revision: number
  readonly lease: string
  /** Announces a new value; NotLeaderError once no longer leader. */
  proclaim(value: Bytes): Promise<void>
  resign(): Promise<void>
}

/** An election (etcd's layout, interoperable with `etcdctl elect`). */
export declare class Election {
  readonly name: string
  campaign(value: Bytes, options?: { ttlSec?: number; signal?: AbortSignal }): Promise<Leadership>
  /** The current leader, or null. */
  leader(): Promise<LeaderInfo | null>
  /** Each new leader; aborting throws an AbortError out of the loop. */
  observe(options?: { signal?: AbortSignal }): AsyncGenerator<LeaderInfo, void, undefined>
}

export type Health = 'passing' | 'warning' | 'critical'

/** A health check's state as written in its instance's entry. */
export interface CheckState {
  health: Health
  /** The output of the probe (or the TTL report's note) that set the state. */
  output: string
}

export interface Instance {
  service: string
  id: string
  addrs: string[]
  metadata: Record<string, string>
  tags: string[]
  version: string
  /** With checks: the worst of their states. */
  health: Health
  /** The states of the checks its owner runs, by check name (empty without checks). */
  checks: Record<string, CheckState>
}

/**
 * Settings every kind of check takes. Durations are milliseconds, like
 * the client's other timeouts (only lease TTLs are whole seconds, `ttlSec`).
 */
export interface CheckSettings {
  /**
   * Unique within the registration; by default the kind ('http', 'tcp',
   * 'grpc', 'cmd', 'ttl'), then 'http-2', ... for a second check of one kind.
   */
  name?: string
  /** Time between two probes (default 10000). */
  intervalMs?: number
  /** Limit on one probe (default 5000). */
  timeoutMs?: number
  /** Consecutive passing results needed to turn passing (default 1). */
  successBeforePassing?: number
  /** Consecutive failures needed to turn warning or critical (default 1). */
  failuresBeforeCritical?: number
  /** Deregisters the instance once the check has been critical this long. */
  deregisterCriticalAfterMs?: number
}

/**
 * How an `https://` HTTP or gRPC check verifies the server (Consul's
 * `TLSServerName` and `TLSSkipVerify`, and a CA file). Only with an
 * `https://` target; a failed handshake is critical.
 */
export interface CheckTlsOptions {
  /** PEM file of the CA certificates to trust (default: the system's roots). */
  tlsCaFile?: string
  /** The name the certificate must be valid for, also sent as SNI (default: the target's host). */
  tlsServerName?: string
  /** Accepts any certificate: encrypted, but the server is not authenticated. */
  tlsSkipVerify?: boolean
}

/**
 * A health check the registering process runs (as Consul's agent does):
 * exactly one of `http`, `tcp`, `grpc`, `command`, `ttlMs`.
 */
export type CheckSpec = CheckSettings &
  (
    | ({ /** `GET` this `http://` or `https://` URL: 2xx passing, 429 warning, else critical. */ http: string } & CheckTlsOptions)
    | { /** Connect to `host:port`: accepted is passing. */ tcp: string }
    | ({ /** grpc.health.v1 target `ADDR[/SERVICE]` (`ADDR` may be `https://host:port`): SERVING is passing. */ grpc: string } & CheckTlsOptions)
    | { /** Program and arguments: exit 0 passing, 1 warning, else critical. */ command: string[] }
    | { /** Reported by `passTtl`/`warnTtl`/`failTtl`; none within `ttlMs` is critical. */ ttlMs: number }
  )

/** Which instances `list` and `subscribe` return. */
export interface ServiceFilterOptions {
  /** Only instances carrying every one of these tags. */
  tags?: string[]
  /** Only instances whose metadata has every one of these labels, equal. */
  metadata?: Record<string, string>
  /**
   * 'passing': passing only; 'warning': passing or warning (not critical);
   * 'any' (default, as Consul's catalog and kv-discovery): every instance.
   */
  health?: 'passing' | 'warning' | 'any'
  /** Key namespace (default "kv"). */
  namespace?: string
}

export interface RegisterOptions {
  /** Instance ID (a UUID v4 by default). */
  id?: string
  metadata?: Record<string, string>
  version?: string
  health?: Health
  /** Lease TTL (default 10 s): a dead instance disappears within it. */
  ttlSec?: number
  /** Key namespace (default "kv"). */
  namespace?: string
  /** Tags subscribers can filter on. */
  tags?: string[]
  /** Health checks this process runs; the instance starts critical until they pass. */
  checks?: CheckSpec[]
}

export interface RegistrationEvents {
  registered: [{ lease?: string }]
  lost: [{ lease?: string; reason?: string; message?: string }]
  retryFailed: [{ message?: string }]
  reregistered: [{ lease?: string }]
  health: [{ health?: Health }]
  event: [{ type: string; lease?: string; reason?: string; message?: string; health?: Health }]
  error: [KvError]
}

/** A registered instance, kept alive and re-registered after a lost lease. */
export declare class Registration extends EventEmitter<RegistrationEvents> {
  readonly key: string
  readonly lease: string
  readonly instance: Instance
  /**
   * The states of its checks, by name (as `instance.checks`), refreshed with
   * each registration event and TTL report: a state change that leaves the
   * instance's health as it was shows here at the next one (`list` and
   * subscriptions read the stored entry and see it at once).
   */
  readonly checks: Record<string, CheckState>
  /** Sets the health and rewrites the entry (with checks, the next check state change replaces it). */
  setHealth(health: Health): Promise<void>
  /** Reports TTL check `name` passing (`note` becomes its output) for the check's `ttlMs`. */
  passTtl(name: string, note?: string): Promise<void>
  /** Reports TTL check `name` warning. */
  warnTtl(name: string, note?: string): Promise<void>
  /** Reports TTL check `name` critical. */
  failTtl(name: string, note?: string): Promise<void>
  /** Deregisters now. */
  close(): Promise<void>
}

export interface ServiceChange {
  type: 'added' | 'updated' | 'removed'
  instance: Instance
}

export interface SubscriptionEvents {
  added: [Instance]
  updated: [Instance]
  removed: [Instance]
  change: [ServiceChange]
  error: [KvError]
}

/** The live instances of a service: listen to it or iterate it, not both. */
export declare class Subscription extends EventEmitter<SubscriptionEvents> implements AsyncIterable<ServiceChange> {
  /** The instances live now: it may be ahead of events not yet delivered. */
  readonly instances: Instance[]
  readonly revision: number
  close(): void
  [Symbol.asyncIterator](): AsyncIterator<ServiceChange>
}

export declare class Client {
  /** Returns at once; connecting happens in the background (its failure surfaces on the first call). */
  constructor(options: ClientOptions)
  /** Connects and waits until ready (a wrong password fails here with AuthFailedError). */
  static connect(options: ClientOptions): Promise<Client>

  get(key: Bytes, options?: GetOptions): Promise<KeyValue | null>
  getPrefix(prefix: Bytes, options?: GetOptions): Promise<RangeResult>
  getRange(start: Bytes, end: Bytes, options?: GetOptions): Promise<RangeResult>
  getFromKey(key: Bytes, options?: GetOptions): Promise<RangeResult>
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<PutResult>
  delete(key: Bytes, options?: { prevKv?: boolean }): Promise<DeleteResult>
  deletePrefix(prefix: Bytes, options?: { prevKv?: boolean }): Promise<DeleteResult>
  deleteRange(start: Bytes, end: Bytes, options?: { prevKv?: boolean }): Promise<DeleteResult>
  txn(): Txn
  /** Compacts the history up to `revision`; resolves with the header revision. */
  compact(revision: number, options?: { physical?: boolean }): Promise<number>
  status(): Promise<StatusResult>
  members(): Promise<Member[]>

  watch(key: Bytes, options?: WatchOptions & { end?: Bytes }): Watcher
  watchPrefix(prefix: Bytes, options?: WatchOptions): Watcher

  lease(ttlSec: number, options?: { autoKeepAlive?: boolean }): Promise<Lease>
  leaseRevoke(id: LeaseLike): Promise<void>
  leaseTimeToLive(id: LeaseLike, options?: { keys?: boolean }): Promise<LeaseTtl>
  leases(): Promise<string[]>

  lock(name: string, options?: LockOptions): Promise<Lock>
  withLock<T>(name: string, options: LockOptions, fn: (lock: Lock) => Promise<T> | T): Promise<T>
  withLock<T>(name: string, fn: (lock: Lock) => Promise<T> | T): Promise<T>
  election(name: string): Election

  register(service: string, addr: string | string[], options?: RegisterOptions): Promise<Registration>
  subscribe(service: string, options?: ServiceFilterOptions): Promise<Subscription>
  /** The instances of `service` registered now that pass the filter. */
  list(service: string, options?: ServiceFilterOptions): Promise<Instance[]>

  /** Ends every watch, keeper, lock wait and subscription; later calls fail with ClosedError. */
  close(): Promise<void>
}

/**
 * The stable error codes (`err.code`):
 * - 'UNAVAILABLE': no server could be reached, or it said it is unavailable
 * - 'TIMEOUT': the call did not finish within its deadline (a write may have been applied)
 * - 'COMPACTED': the revision was compacted (CompactedError, with `compactRevision` from watches)
 * - 'FUTURE_REV': the revision is newer than the store's
 * - 'LEASE_NOT_FOUND': the lease does not exist (never granted, revoked or expired)
 * - 'KEY_NOT_FOUND', 'NO_LEADER', 'NOT_LEADER', 'NO_SPACE', 'REQUEST_TOO_LARGE',
 *   'DUPLICATE_KEY', 'TOO_MANY_OPS', 'WATCH_CANCELED', 'TRANSPORT', 'CONFIG': as etcd's errors of the same name
 * - 'PERMISSION_DENIED', 'AUTH_FAILED', 'INVALID_AUTH_TOKEN', and the other etcd auth errors ('USER_NOT_FOUND', ...)
 * - 'INVALID_ARGUMENT': a bad argument (from JS, or refused by the server)
 * - 'CLOSED': the client (or handle) was closed
 * - 'ABORTED': the operation's AbortSignal fired (AbortError)
 * - 'LOCKED': `tryOnly` found the lock held; 'SESSION_EXPIRED': the lock's or campaign's lease was lost while waiting
 * - 'ELECTION_NOT_LEADER', 'ELECTION_NO_LEADER': election outcomes
 * - 'TTL_ELAPSED', 'LEASE_LOST': why a kept lease was lost
 * - 'INTERNAL': a bug in kvclient (reported, never a crash)
 * - 'UNKNOWN': any other server error
 */
export type ErrorCode =
  | 'UNAVAILABLE'
  | 'TIMEOUT'
  | 'COMPACTED'
  | 'FUTURE_REV'
  | 'LEASE_NOT_FOUND'
  | 'KEY_NOT_FOUND'
  | 'NO_LEADER'
  | 'NOT_LEADER'
  | 'NO_SPACE'
  | 'REQUEST_TOO_LARGE'
  | 'DUPLICATE_KEY'
  | 'TOO_MANY_OPS'
  | 'WATCH_CANCELED'
  | 'TRANSPORT'
  | 'CONFIG'
  | 'PERMISSION_DENIED'
  | 'AUTH_FAILED'
  | 'INVALID_AUTH_TOKEN'
  | 'INVALID_ARGUMENT'
  | 'CLOSED'
  | 'ABORTED'
  | 'LOCKED'
  | 'SESSION_EXPIRED'
  | 'ELECTION_NOT_LEADER'
  | 'ELECTION_NO_LEADER'
  | 'TTL_ELAPSED'
  | 'LEASE_LOST'
  | 'INTERNAL'
  | 'UNKNOWN'
  | (string & {})

/** Every error kvclient throws or emits. */
export declare class KvError extends Error {
  readonly code: ErrorCode
  constructor(message: string, code: ErrorCode, options?: { cause?: unknown })
}
export declare class UnavailableError extends KvError {
  readonly code: 'UNAVAILABLE'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class TimeoutError extends KvError {
  readonly code: 'TIMEOUT'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class CompactedError extends KvError {
  readonly code: 'COMPACTED'
  constructor(message: string, compactRevision?: number, options?: { cause?: unknown })
  /** The oldest revision still available, when the server said (watches do). */
  readonly compactRevision: number | undefined
}
export declare class FutureRevisionError extends KvError {
  readonly code: 'FUTURE_REV'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class LeaseNotFoundError extends KvError {
  readonly code: 'LEASE_NOT_FOUND'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class PermissionDeniedError extends KvError {
  readonly code: 'PERMISSION_DENIED'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class AuthFailedError extends KvError {
  readonly code: 'AUTH_FAILED'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class InvalidArgumentError extends KvError {
  readonly code: 'INVALID_ARGUMENT'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class ClosedError extends KvError {
  readonly code: 'CLOSED'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class AbortError extends KvError {
  readonly code: 'ABORTED'
  constructor(message?: string, options?: { cause?: unknown })
}
export declare class LockedError extends KvError {
  readonly code: 'LOCKED'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class SessionExpiredError extends KvError {
  readonly code: 'SESSION_EXPIRED'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class NotLeaderError extends KvError {
  readonly code: 'ELECTION_NOT_LEADER'
  constructor(message: string, options?: { cause?: unknown })
}
export declare class NoLeaderError extends KvError {
  readonly code: 'ELECTION_NO_LEADER'
  constructor(message: string, options?: { cause?: unknown })
}
