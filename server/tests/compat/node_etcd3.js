// Drives a server with npm's `etcd3` package (a client we did not write).
// Usage: node node_etcd3.js HOST:PORT. Exits non-zero on the first mismatch.
const { Etcd3 } = require('etcd3');

const client = new Etcd3({ hosts: `http://${process.argv[2]}` });

function check(cond, what) {
  if (!cond) {
    console.error('FAIL:', what);
    process.exit(1);
  }
}

async function main() {
  await client.put('/js/a').value('1');
  await client.put('/js/b').value('2');
  check((await client.get('/js/a').string()) === '1', 'get');
  const all = await client.getAll().prefix('/js/').strings();
  check(JSON.stringify(all) === JSON.stringify({ '/js/a': '1', '/js/b': '2' }), 'getAll prefix');

  const res = await client.if('/js/a', 'Value', '==', '1').then(client.put('/js/a').value('10')).commit();
  check(res.succeeded, 'txn succeeded');
  check((await client.get('/js/a').string()) === '10', 'txn applied');

  const watcher = await client.watch().prefix('/js/w').create();
  const seen = [];
  const got = new Promise((resolve) => {
    watcher.on('put', (kv) => {
      seen.push(kv.key.toString());
      if (seen.length === 2) resolve();
    });
  });
  await client.put('/js/w1').value('x');
  await client.put('/js/w2').value('y');
  await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error('watch timeout')), 10000))]);
  check(JSON.stringify(seen) === JSON.stringify(['/js/w1', '/js/w2']), 'watch order ' + seen);
  await watcher.cancel();

  const lease = client.lease(60);
  await lease.put('/js/leased').value('v');
  const ka = await lease.keepaliveOnce();
  check(Number(ka.TTL) > 0, 'keepalive ttl ' + ka.TTL);
  await lease.revoke();
  check((await client.get('/js/leased').string()) === null, 'revoke deleted key');

  const del = await client.delete().prefix('/js/');
  check(Number(del.deleted) === 4, 'delete prefix count ' + del.deleted);
  client.close();
  console.log('node etcd3: ok');
  // The client keeps the process alive ~10 s after close (as against etcd).
  process.exit(0);
}

main().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
