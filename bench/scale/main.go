// kv-scale: the client side of bench/scale.sh. It drives any etcd v3
// endpoint (kvd or etcd) through etcd's own Go client (clientv3), so both
// servers are measured by a client neither of them wrote.
//
// Each subcommand prints "name value" lines (one figure a line) on stdout;
// bench/scale.sh turns them into CSV columns. Errors go to stderr, exit 1.
package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "load":
		err = cmdLoad(args)
	case "range":
		err = cmdRange(args)
	case "ready":
		err = cmdReady(args)
	case "head":
		err = cmdHead(args)
	case "caught-up":
		err = cmdCaughtUp(args)
	case "member-add":
		err = cmdMemberAdd(args)
	case "member-remove":
		err = cmdMemberRemove(args)
	case "compact", "defrag":
		err = cmdMaintenance(cmd, args)
	case "watch":
		err = cmdWatch(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kv-scale %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: kv-scale COMMAND [flags]
  load          write --keys keys --versions times each, in txns of --ops-per-txn puts
  range         p50/p99 of linearizable 1000-key prefix reads
  ready         poll linearizable reads until one is served
  head          print the head revision
  caught-up     poll serializable reads on a member until it reaches --rev
  member-add    add a member with --peer-url; prints its id
  member-remove remove member --id
  compact       compact at the head revision (physical) while puts run
  defrag        defragment while puts run
  watch         W watchers over S streams on one prefix while writers put
Run "kv-scale COMMAND -h" for a command's flags.`)
	os.Exit(2)
}

// out prints one figure.
func out(name string, v any) {
	switch x := v.(type) {
	case float64:
		fmt.Printf("%s %.3f\n", name, x)
	default:
		fmt.Printf("%s %v\n", name, x)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func secs(d time.Duration) float64 { return d.Seconds() }

// withTimeout is context.WithTimeout on the background context.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
