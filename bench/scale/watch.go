package main

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// cmdWatch opens --watchers watchers on one prefix spread over --streams
// watch streams (a clientv3 Watcher is one gRPC stream) on --conns
// connections, then --writers put --puts keys under the prefix; every put is
// one event per watcher. Reports events delivered per second, from the first
// put to the last event.
func cmdWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	var c common
	c.register(fs)
	streams := fs.Int("streams", 1000, "watch streams")
	watchers := fs.Int("watchers", 10000, "watchers, spread evenly over the streams")
	writers := fs.Int("writers", 4, "concurrent writers")
	puts := fs.Int("puts", 1000, "puts in all")
	drain := fs.Duration("drain", 2*time.Minute, "how long delivery may take after the last put")
	_ = fs.Parse(args)
	if *streams < 1 || *watchers < *streams {
		return fmt.Errorf("need 1 <= --streams <= --watchers")
	}
	cs, err := c.dialAll()
	if err != nil {
		return err
	}
	defer closeAll(cs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const prefix = "wscale/"
	var (
		events   atomic.Int64
		lastNano atomic.Int64
		created  sync.WaitGroup
		done     sync.WaitGroup
		failed   atomic.Value
	)
	openStart := time.Now()
	for s := range *streams {
		w := clientv3.NewWatcher(cs[s%len(cs)])
		defer w.Close()
		n := *watchers / *streams
		if s < *watchers%*streams {
			n++
		}
		for range n {
			created.Add(1)
			done.Add(1)
			ch := w.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			go func() {
				defer done.Done()
				first := true
				for resp := range ch {
					if err := resp.Err(); err != nil {
						failed.CompareAndSwap(nil, err)
					}
					if first {
						first = false
						created.Done()
						continue
					}
					if k := len(resp.Events); k > 0 {
						events.Add(int64(k))
						lastNano.Store(time.Now().UnixNano())
					}
				}
				if first {
					created.Done()
				}
			}()
		}
	}
	created.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return fmt.Errorf("opening watchers: %w", err)
	}
	out("watch_open_s", secs(time.Since(openStart)))

	putStart := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	val := value(c.valSize, 5)
	for w := range *writers {
		wg.Add(1)
		go func(cl *clientv3.Client) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(*puts) {
					return
				}
				if err := retry(func(ctx context.Context) error {
					_, err := cl.Put(ctx, fmt.Sprintf("%s%06d", prefix, i%1000), val)
					return err
				}); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}(cs[w%len(cs)])
	}
	wg.Wait()
	putsDone := time.Since(putStart)
	want := int64(*puts) * int64(*watchers)
	deadline := time.Now().Add(*drain)
	for events.Load() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := events.Load()
	last := time.Unix(0, lastNano.Load())
	cancel()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	span := last.Sub(putStart)
	if got == 0 || span <= 0 {
		return fmt.Errorf("no events delivered")
	}
	out("watch_puts_s", secs(putsDone))
	out("watch_events", got)
	out("watch_events_expected", want)
	out("watch_events_per_s", float64(got)/span.Seconds())
	return nil
}
