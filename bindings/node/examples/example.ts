// The README's TypeScript example, compiled by the test script with
// `tsc --noEmit --strict` so the published types stay usable.
import {
  Client,
  Compare,
  Op,
  CompactedError,
  KvError,
  type KeyValue,
  type Instance,
  type Lock,
} from 'kvclient'

export async function main(endpoint: string): Promise<void> {
  const client = new Client({ endpoints: [endpoint], requestTimeoutMs: 5000 })
  await client.put('config/db', 'postgres://db:5432')
  const kv: KeyValue | null = await client.get('config/db')
  const url: string | undefined = kv?.text
  const raw: Buffer | undefined = kv?.value
  console.log(url, raw?.length, kv?.modRevision)

  const { kvs, revision } = await client.getPrefix('config/')
  console.log(kvs.map((k) => k.keyText), revision)

  const txn = await client
    .txn()
    .when(Compare.version('config/db', '>', 0))
    .andThen(Op.put('config/seen', 'yes'))
    .orElse(Op.get('config/db'))
    .commit()
  if (txn.succeeded) console.log('revision', txn.revision)

  const ac = new AbortController()
  setTimeout(() => ac.abort(), 1000)
  try {
    for await (const ev of client.watchPrefix('config/', { signal: ac.signal })) {
      const type: 'put' | 'delete' = ev.type
      console.log(type, ev.kv.keyText, ev.kv.text)
    }
  } catch (e) {
    if (e instanceof CompactedError) console.log('compacted at', e.compactRevision)
    else if (e instanceof KvError && e.code === 'ABORTED') console.log('stopped')
    else throw e
  }

  const watcher = client.watch('config/db')
  watcher.on('put', (ev) => console.log('now', ev.kv.text))
  watcher.on('error', (err) => console.error(err.code, err.message))
  watcher.cancel()

  const lease = await client.lease(10)
  lease.on('lost', (err) => console.error('lease lost:', err.code))
  await lease.put('config/ephemeral', 'x')
  await lease.revoke()

  const token: number = await client.withLock('jobs/nightly', { ttlSec: 10 }, async (lock: Lock) => {
    return lock.fencingToken
  })
  console.log('fenced with', token)

  const leadership = await client.election('scheduler').campaign('node-1')
  await leadership.proclaim('node-1 v2')
  await leadership.resign()

  const reg = await client.register('web', '10.0.0.5:8080', { metadata: { zone: 'a' }, ttlSec: 10 })
  reg.on('reregistered', ({ lease }) => console.log('back on lease', lease))
  const sub = await client.subscribe('web')
  const now: Instance[] = sub.instances
  console.log(now.map((i) => `${i.id} ${i.addrs.join(',')} ${i.health}`))
  sub.on('removed', (i) => console.log('gone', i.id))
  sub.close()
  await reg.close()

  await client.close()
}
