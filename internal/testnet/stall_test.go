package testnet

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
)

func dialStore(t *testing.T, addr string) storev1.StoreClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return storev1.NewStoreClient(conn)
}

// TestStalling: the k-th GetBlockByNumber call is held when k % every == 0,
// until the client gives up, the stall ends or the server stops; every
// answer is the upstream's.
func TestStalling(t *testing.T) {
	p := StartPrimary(t, 20*time.Millisecond, nil)
	WaitFor(t, 10*time.Second, "the primary's first block", func() bool { c, _ := p.Store().Tips(); return c >= 1 })
	want, err := p.Store().Snapshot().BlockBytes(1)
	if err != nil {
		t.Fatal(err)
	}
	get := func(c storev1.StoreClient, within time.Duration) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		mb, err := c.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: 1})
		return mb.GetBlock(), err
	}

	t.Run("held until the client gives up", func(t *testing.T) {
		s := StartStalling(t, p.PublicAddr(), 3, time.Hour)
		c := dialStore(t, s.Addr())
		for k := 1; k <= 2; k++ {
			got, err := get(c, 10*time.Second)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("call %d: got %d bytes, %v; want block 1 as the upstream serves it", k, len(got), err)
			}
		}
		if _, err := get(c, 200*time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call 3: %v, want DeadlineExceeded", err)
		}
		if _, err := c.Status(context.Background(), &storev1.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
		if s.Calls() != 3 || s.Stalled() != 1 || s.OtherCalls() != 1 {
			t.Fatalf("calls %d, stalled %d, other calls %d; want 3, 1, 1", s.Calls(), s.Stalled(), s.OtherCalls())
		}
		WaitFor(t, 5*time.Second, "the held call to end", func() bool { return s.Holding() == 0 })
	})

	t.Run("answered when the stall ends", func(t *testing.T) {
		const stall = 100 * time.Millisecond
		s := StartStalling(t, p.PublicAddr(), 1, stall)
		start := time.Now()
		got, err := get(dialStore(t, s.Addr()), 10*time.Second)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes, %v; want block 1", len(got), err)
		}
		if took := time.Since(start); took < stall {
			t.Fatalf("answered after %s, before the %s stall ended", took, stall)
		}
	})

	t.Run("released when the server stops", func(t *testing.T) {
		s, err := NewStalling(p.PublicAddr(), 1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c := dialStore(t, s.Addr())
		done := make(chan error, 1)
		go func() { _, err := get(c, time.Minute); done <- err }()
		WaitFor(t, 5*time.Second, "the call to be held", func() bool { return s.Holding() == 1 })
		start := time.Now()
		s.Close()
		s.Close() // idempotent
		if err := <-done; status.Code(err) != codes.Unavailable {
			t.Fatalf("held call ended with %v, want Unavailable", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Close took %s", took)
		}
	})
}
