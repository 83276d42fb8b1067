package main

import (
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// common are the flags every command takes.
type common struct {
	endpoints string
	conns     int
	keys      int
	valSize   int
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.endpoints, "endpoints", "http://127.0.0.1:2379", "comma-separated client URLs")
	fs.IntVar(&c.conns, "conns", 4, "gRPC connections (one clientv3 client each)")
	fs.IntVar(&c.keys, "keys", 10000, "size of the key space")
	fs.IntVar(&c.valSize, "val-size", 256, "value size in bytes")
}

func (c *common) eps() []string { return strings.Split(c.endpoints, ",") }

// dial opens one clientv3 client (one gRPC connection) to the endpoints.
func dial(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:          eps,
		DialTimeout:        5 * time.Second,
		Logger:             zap.NewNop(),
		MaxCallSendMsgSize: 64 << 20,
		MaxCallRecvMsgSize: 64 << 20,
	})
}

func (c *common) dialAll() ([]*clientv3.Client, error) {
	n := max(c.conns, 1)
	cs := make([]*clientv3.Client, 0, n)
	for range n {
		cl, err := dial(c.eps())
		if err != nil {
			closeAll(cs)
			return nil, err
		}
		cs = append(cs, cl)
	}
	return cs, nil
}

func closeAll(cs []*clientv3.Client) {
	for _, c := range cs {
		_ = c.Close()
	}
}

// key is the name of key i: "scale/" and nine digits, so the first six
// digits name a prefix of exactly 1000 keys.
func key(i int) string { return fmt.Sprintf("scale/%09d", i) }

// value is a value of n bytes that differs per version, so every version is
// a real new row (no deduplication can hide it).
func value(n, version int) string {
	b := make([]byte, n)
	x := uint32(2463534242 + version*7919)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = 'a' + byte(x%26)
	}
	return string(b)
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return sorted[i]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
