package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// cmdLoad writes every key --versions times (version-major, so the history
// is --versions revisions per key), --ops-per-txn puts per txn, from
// --clients concurrent writers over --conns connections.
func cmdLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var c common
	c.register(fs)
	versions := fs.Int("versions", 4, "times each key is written")
	opsPerTxn := fs.Int("ops-per-txn", 100, "puts per txn (etcd's --max-txn-ops is 128)")
	clients := fs.Int("clients", 16, "concurrent writers")
	_ = fs.Parse(args)
	cs, err := c.dialAll()
	if err != nil {
		return err
	}
	defer closeAll(cs)
	type batch struct{ from, to, version int }
	work := make(chan batch, 64)
	go func() {
		defer close(work)
		for v := range *versions {
			for i := 0; i < c.keys; i += *opsPerTxn {
				work <- batch{i, min(i+*opsPerTxn, c.keys), v}
			}
		}
	}()
	vals := make([]string, *versions)
	for v := range vals {
		vals[v] = value(c.valSize, v)
	}
	var (
		wg       sync.WaitGroup
		failed   atomic.Value
		txns     atomic.Int64
		progress atomic.Int64
	)
	start := time.Now()
	for w := range max(*clients, 1) {
		wg.Add(1)
		go func(cl *clientv3.Client) {
			defer wg.Done()
			for b := range work {
				if failed.Load() != nil {
					continue
				}
				ops := make([]clientv3.Op, 0, b.to-b.from)
				for i := b.from; i < b.to; i++ {
					ops = append(ops, clientv3.OpPut(key(i), vals[b.version]))
				}
				if err := retry(func(ctx context.Context) error {
					_, err := cl.Txn(ctx).Then(ops...).Commit()
					return err
				}); err != nil {
					failed.CompareAndSwap(nil, err)
					continue
				}
				txns.Add(1)
				progress.Add(int64(b.to - b.from))
			}
		}(cs[w%len(cs)])
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return fmt.Errorf("after %d puts: %w", progress.Load(), err)
	}
	el := time.Since(start)
	out("load_puts", progress.Load())
	out("load_txns", txns.Load())
	out("load_s", secs(el))
	out("load_puts_per_s", float64(progress.Load())/el.Seconds())
	return nil
}

// retry runs f with a 60 s deadline, up to 3 times: a loaded 2-core machine
// can stall one request (a leader's fsync), which must not end a long load.
func retry(f func(ctx context.Context) error) error {
	var err error
	for range 3 {
		ctx, cancel := withTimeout(60 * time.Second)
		err = f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// cmdRange measures linearizable reads of a random 1000-key prefix, one at a
// time (latency, not throughput), after a few warm-up reads.
func cmdRange(args []string) error {
	fs := flag.NewFlagSet("range", flag.ExitOnError)
	var c common
	c.register(fs)
	reads := fs.Int("reads", 200, "timed reads")
	_ = fs.Parse(args)
	prefixes := c.keys / 1000
	if prefixes == 0 {
		return fmt.Errorf("--keys %d holds no 1000-key prefix", c.keys)
	}
	cl, err := dial(c.eps())
	if err != nil {
		return err
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 0, *reads)
	for n := range *reads + 10 {
		p := fmt.Sprintf("scale/%06d", rng.IntN(prefixes))
		ctx, cancel := withTimeout(30 * time.Second)
		t := time.Now()
		resp, err := cl.Get(ctx, p, clientv3.WithPrefix())
		d := time.Since(t)
		cancel()
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1000 {
			return fmt.Errorf("prefix %s: %d keys, want 1000", p, len(resp.Kvs))
		}
		if n >= 10 {
			lat = append(lat, d)
		}
	}
	sortDurations(lat)
	out("range1000_p50_ms", ms(percentile(lat, 50)))
	out("range1000_p99_ms", ms(percentile(lat, 99)))
	return nil
}
