package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// span is one put: when it started and how long it took.
type span struct {
	start time.Time
	dur   time.Duration
	err   error
}

// cmdMaintenance runs puts from --putters writers, then after --baseline
// starts a physical compaction at the head revision (compact) or a
// defragmentation (defrag), and reports its time and the p50/p99 of the
// puts that overlapped it, beside the p99 of the puts before it.
func cmdMaintenance(op string, args []string) error {
	fs := flag.NewFlagSet(op, flag.ExitOnError)
	var c common
	c.register(fs)
	putters := fs.Int("putters", 8, "concurrent writers during the operation")
	baseline := fs.Duration("baseline", 2*time.Second, "puts before the operation starts")
	_ = fs.Parse(args)
	cs, err := c.dialAll()
	if err != nil {
		return err
	}
	defer closeAll(cs)
	admin, err := dial(c.eps()[:1])
	if err != nil {
		return err
	}
	defer admin.Close()

	stop := make(chan struct{})
	results := make([][]span, *putters)
	var wg sync.WaitGroup
	val := value(c.valSize, 99)
	for w := range *putters {
		wg.Add(1)
		go func(w int, cl *clientv3.Client) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := withTimeout(5 * time.Minute)
				t := time.Now()
				_, err := cl.Put(ctx, key(rng.IntN(max(c.keys, 1))), val)
				d := time.Since(t)
				cancel()
				results[w] = append(results[w], span{t, d, err})
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}(w, cs[w%len(cs)])
	}
	time.Sleep(*baseline)

	ctx, cancel := withTimeout(30 * time.Minute)
	defer cancel()
	var rev int64
	if op == "compact" {
		g, err := admin.Get(ctx, "scale/ready")
		if err != nil {
			close(stop)
			wg.Wait()
			return err
		}
		rev = g.Header.Revision
	}
	t0 := time.Now()
	timedOut := 0
	if op == "compact" {
		_, err = admin.Compact(ctx, rev, clientv3.WithCompactPhysical())
		// A server may answer "request timed out" while it still applies
		// the compaction (kvd applies it in the write path). A put after
		// it is applied after it, so its answer marks the compaction's end.
		if err != nil && errors.Is(err, rpctypes.ErrTimeout) {
			timedOut = 1
			err = retry(func(ctx context.Context) error {
				_, err := admin.Put(ctx, "scale/compacted", "1")
				return err
			})
		}
	} else {
		_, err = admin.Defragment(ctx, c.eps()[0])
	}
	t1 := time.Now()
	// Let the puts that were held up by the operation finish and be counted.
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// Puts that failed while the operation ran are counted apart: a
	// latency percentile of the successful ones alone would hide them.
	var before, during []time.Duration
	failed := 0
	var firstErr error
	for _, r := range results {
		for _, s := range r {
			end := s.start.Add(s.dur)
			switch {
			case end.Before(t0):
				if s.err == nil {
					before = append(before, s.dur)
				}
			case s.start.Before(t1):
				if s.err == nil {
					during = append(during, s.dur)
				} else {
					failed++
					firstErr = cmp.Or(firstErr, s.err)
				}
			}
		}
	}
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "%s: %d puts failed during it, the first with: %v\n", op, failed, firstErr)
	}
	sortDurations(before)
	sortDurations(during)
	out(op+"_s", secs(t1.Sub(t0)))
	if op == "compact" {
		out("compact_rpc_timed_out", timedOut)
	}
	out(op+"_puts_during", len(during))
	out(op+"_puts_failed", failed)
	out(op+"_put_p50_ms", ms(percentile(during, 50)))
	out(op+"_put_p99_ms", ms(percentile(during, 99)))
	out(op+"_put_max_ms", ms(percentile(during, 100)))
	out(op+"_baseline_put_p99_ms", ms(percentile(before, 99)))
	return nil
}
