package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"storesync/api"
	"storesync/api/storev1"
	"storesync/internal/testnet"
)

// TestLimitReadLimiter drives the read limiter call by call: one running,
// one waiting, a busy connection refused once the queue is full, another
// connection's first call still queued, waiters served first come first
// served, a cancelled wait leaving no trace.
func TestLimitReadLimiter(t *testing.T) {
	r := newReadLimiter(Limits{ConcurrentReads: 1, QueuedReads: 1})
	ctx := context.Background()
	if err := r.acquire(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	waiting := func() int { r.mu.Lock(); defer r.mu.Unlock(); return r.waiting }
	go func() {
		if err := r.acquire(ctx, "a"); err == nil {
			order <- "a"
		}
	}()
	waitFor(t, 10*time.Second, "a's second call to wait", func() bool { return waiting() == 1 })
	if err := r.acquire(ctx, "a"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third call of a busy connection past a full queue: %v, want ResourceExhausted", err)
	}
	go func() {
		if err := r.acquire(ctx, "b"); err == nil {
			order <- "b"
		}
	}()
	waitFor(t, 10*time.Second, "b's only call to wait past the full queue", func() bool { return waiting() == 2 })
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.acquire(cctx, "c"); status.Code(err) != codes.Canceled {
		t.Fatalf("a cancelled wait: %v, want Canceled", err)
	}
	r.release("a")
	if got := <-order; got != "a" {
		t.Fatalf("%s served first; a waited first", got)
	}
	r.release("a")
	if got := <-order; got != "b" {
		t.Fatalf("%s served second, want b", got)
	}
	r.release("b")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting != 0 || len(r.perConn) != 0 || len(r.slots) != 0 {
		t.Fatalf("left behind: %d waiting, connections %v, %d slots", r.waiting, r.perConn, len(r.slots))
	}
}

// stallConn reads normally until it has read after bytes, then never again
// (until closed): a client that stops reading its socket, whose unread
// responses fill the kernel's buffers and then the server's.
type stallConn struct {
	net.Conn
	left   atomic.Int64
	closed chan struct{}
	once   sync.Once
}

func (c *stallConn) Read(p []byte) (int, error) {
	if c.left.Load() <= 0 {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p[:min(int64(len(p)), c.left.Load())])
	c.left.Add(-int64(n))
	return n, err
}

func (c *stallConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestLimitFloodDoesNotStarve: a follower with small read limits (2 reads
// running, 4 waiting) serves a flood (8 connections each running 32 callers
// of GetBlockByNumber with its proof, far past the 8 streams a connection may
// have, plus 4 connections that stop reading their socket with calls open)
// while its primary keeps producing. The follower keeps syncing (40 blocks produced after the flood
// began are applied while it goes on), and a well-behaved client reading
// every 20 ms on its own connection gets every answer (none refused, none
// timing out at 10 s). The flood is refused in part, with ResourceExhausted.
func TestLimitFloodDoesNotStarve(t *testing.T) {
	p := startPrimary(t, 25*time.Millisecond)
	f := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "flooded follower"), func(c *Config) {
		c.Limits = Limits{StreamsPerConn: 8, ConcurrentReads: 2, QueuedReads: 4}
	}, p.PublicAddr())
	startFollower(t, f)
	waitFor(t, 30*time.Second, "the follower to sync 20 blocks", func() bool { c, _ := f.Store().Tips(); return c >= 20 })

	// A request past --max-request-bytes is refused by gRPC itself.
	good := dialClient(t, f.Addr(), nil)
	huge := &storev1.CheckNullifiersRequest{Nullifiers: slices.Repeat([][]byte{make([]byte, 32)}, 10000)}
	if _, err := good.CheckNullifiers(context.Background(), huge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 340 KB request: %v, want ResourceExhausted", err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	var served, refused, failed atomic.Int64
	var lastErr atomic.Value
	for range 8 {
		c := dialClient(t, f.Addr(), nil)
		for k := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(k); ctx.Err() == nil; i += 7 {
					tip, _ := f.Store().Tips()
					_, err := c.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: i % (tip + 1), IncludeProof: true})
					switch {
					case err == nil:
						served.Add(1)
					case status.Code(err) == codes.ResourceExhausted:
						refused.Add(1)
					case ctx.Err() == nil:
						failed.Add(1)
						lastErr.Store(err)
					}
				}
			}()
		}
	}
	for range 4 {
		c := dialClient(t, f.Addr(), func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			sc := &stallConn{Conn: conn, closed: make(chan struct{})}
			sc.left.Store(16 << 10) // the handshake and a few answers
			return sc, nil
		})
		for k := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(k); ctx.Err() == nil; i++ {
					_, _ = c.GetBlockByNumber(ctx, &storev1.BlockByNumberRequest{BlockNum: i % 20, IncludeProof: true})
				}
			}()
		}
	}
	floodStart := time.Now()
	waitFor(t, 60*time.Second, "the flood to be served and refused", func() bool { return served.Load() >= 200 && refused.Load() >= 20 })
	t.Logf("flood at full strength after %s: %d served, %d refused", time.Since(floodStart).Round(time.Millisecond), served.Load(), refused.Load())

	// The well-behaved client, on its own connection.
	var lat []time.Duration
	var goodErr error
	wg.Add(1)
	goodDone := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(goodDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			tip, _ := f.Store().Tips()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			start := time.Now()
			_, err := good.GetBlockByNumber(cctx, &storev1.BlockByNumberRequest{BlockNum: tip, IncludeProof: true})
			cancel()
			if err != nil && ctx.Err() == nil {
				goodErr = err
				return
			}
			lat = append(lat, time.Since(start))
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}()

	start := time.Now()
	target, _ := p.Store().Tips()
	target += 40
	var maxLag uint64
	waitFor(t, 90*time.Second, "the flooded follower to apply 40 blocks produced during the flood", func() bool {
		pc, _ := p.Store().Tips()
		fc, _ := f.Store().Tips()
		maxLag = max(maxLag, pc-min(pc, fc))
		return fc >= target
	})
	took := time.Since(start)
	stop()
	<-goodDone
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("the well-behaved client's read failed during the flood: %v", goodErr)
	}
	if len(lat) < 10 {
		t.Fatalf("the well-behaved client made only %d reads", len(lat))
	}
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d flood calls failed other than ResourceExhausted, the last: %v", n, lastErr.Load())
	}
	slices.Sort(lat)
	t.Logf("40 blocks applied under the flood in %s (the primary makes one per 25 ms), lag at most %d blocks",
		took.Round(time.Millisecond), maxLag)
	t.Logf("flood: %d calls served, %d refused (ResourceExhausted) in all", served.Load(), refused.Load())
	t.Logf("well-behaved client: %d reads, none failed; latency p50 %s p99 %s max %s", len(lat),
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
}

// dialClient is a read API client of addr, closed when the test ends.
func dialClient(t *testing.T, addr string, dial func(context.Context, string) (net.Conn, error)) storev1.StoreClient {
	t.Helper()
	opts := append(api.ClientOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if dial != nil {
		opts = append(opts, grpc.WithContextDialer(dial))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return storev1.NewStoreClient(conn)
}

// TestLimitPingFlood: a client sending HTTP/2 pings back to back, without a
// call open, is sent GOAWAY (ENHANCE_YOUR_CALM, too_many_pings) and
// disconnected instead of being answered for ever.
func TestLimitPingFlood(t *testing.T) {
	p := startPrimary(t, 50*time.Millisecond)
	f := newFollowerCfg(t, genesisOf(p), testnet.LogOnFailure(t, "follower"), nil, p.PublicAddr())
	startFollower(t, f)
	conn, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Pings go out from their own goroutine: the server answers each, and
	// the answers must be read for it to get to the GOAWAY.
	sent := make(chan error, 1)
	go func() {
		var err error
		for i := range 100 {
			if err = fr.WritePing(false, [8]byte{byte(i)}); err != nil {
				break
			}
		}
		sent <- err
	}()
	var pongs int
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection ended without GOAWAY after %d pongs: %v", pongs, err)
		}
		if pf, ok := frame.(*http2.PingFrame); ok && pf.IsAck() {
			pongs++
		}
		if ga, ok := frame.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || !bytes.Contains(ga.DebugData(), []byte("too_many_pings")) {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.ErrCode, ga.DebugData())
			}
			t.Logf("GOAWAY after %d pongs: %v %q", pongs, ga.ErrCode, ga.DebugData())
			break
		}
	}
	conn.Close()
	if err := <-sent; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("pinging stopped: %v", err)
	}
}
