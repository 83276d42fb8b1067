package main

import (
	"flag"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// cmdReady polls until a linearizable read is served, a fresh client per
// try: gRPC's reconnect backoff (1 s and growing) would otherwise be what
// is measured, not the server's start.
func cmdReady(args []string) error {
	fs := flag.NewFlagSet("ready", flag.ExitOnError)
	var c common
	c.register(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	deadline := time.Now().Add(*timeout)
	for {
		err := tryRead(c.eps(), false, func(*clientv3.GetResponse) bool { return true })
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no linearizable read served within %v: %w", *timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tryRead does one Get of "scale/ready" and reports whether ok accepts it.
func tryRead(eps []string, serializable bool, ok func(*clientv3.GetResponse) bool) error {
	cl, err := dial(eps)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := withTimeout(time.Second)
	defer cancel()
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cl.Get(ctx, "scale/ready", opts...)
	if err != nil {
		return err
	}
	if !ok(resp) {
		return fmt.Errorf("at revision %d", resp.Header.Revision)
	}
	return nil
}

func cmdHead(args []string) error {
	fs := flag.NewFlagSet("head", flag.ExitOnError)
	var c common
	c.register(fs)
	_ = fs.Parse(args)
	var rev int64
	err := tryRead(c.eps(), false, func(r *clientv3.GetResponse) bool { rev = r.Header.Revision; return true })
	if err != nil {
		return err
	}
	fmt.Println(rev)
	return nil
}

// cmdCaughtUp polls serializable reads on one member (answered from its own
// store) until its revision reaches --rev.
func cmdCaughtUp(args []string) error {
	fs := flag.NewFlagSet("caught-up", flag.ExitOnError)
	var c common
	c.register(fs)
	rev := fs.Int64("rev", 0, "revision the member must reach")
	timeout := fs.Duration("timeout", 20*time.Minute, "give up after this long")
	_ = fs.Parse(args)
	deadline := time.Now().Add(*timeout)
	for {
		err := tryRead(c.eps(), true, func(r *clientv3.GetResponse) bool { return r.Header.Revision >= *rev })
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("member not at revision %d within %v: %w", *rev, *timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cmdMemberAdd(args []string) error {
	fs := flag.NewFlagSet("member-add", flag.ExitOnError)
	var c common
	c.register(fs)
	peer := fs.String("peer-url", "", "the new member's peer URL")
	learner := fs.Bool("learner", false, "add it as a learner (non-voting)")
	_ = fs.Parse(args)
	cl, err := dial(c.eps())
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := withTimeout(30 * time.Second)
	defer cancel()
	add := cl.MemberAdd
	if *learner {
		add = cl.MemberAddAsLearner
	}
	resp, err := add(ctx, []string{*peer})
	if err != nil {
		return err
	}
	fmt.Printf("%x\n", resp.Member.ID)
	return nil
}

func cmdMemberRemove(args []string) error {
	fs := flag.NewFlagSet("member-remove", flag.ExitOnError)
	var c common
	c.register(fs)
	id := fs.String("id", "", "member id (hex)")
	timeout := fs.Duration("timeout", 2*time.Minute, "keep trying this long")
	_ = fs.Parse(args)
	n, err := strconv.ParseUint(*id, 16, 64)
	if err != nil {
		return fmt.Errorf("bad --id %q: %w", *id, err)
	}
	cl, err := dial(c.eps())
	if err != nil {
		return err
	}
	defer cl.Close()
	// etcd refuses to remove a member that has not yet published itself
	// ("reconfigure breaks active quorum"), as a just-caught-up one may not
	// have: try again until it is accepted.
	deadline := time.Now().Add(*timeout)
	for {
		ctx, cancel := withTimeout(10 * time.Second)
		_, err = cl.MemberRemove(ctx, n)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
