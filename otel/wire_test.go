package otel

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// TestWireCountsBytesSent: over real gRPC on loopback, the bytes counted
// for a method are at least the encoded size of the responses it sent
// (the wire adds a frame header per message), and no other method is
// charged.
func TestWireCountsBytesSent(t *testing.T) {
	w := NewWire()
	srv := grpc.NewServer(grpc.StatsHandler(w))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	const calls = 5
	var size int
	for range calls {
		resp, err := c.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		size += proto.Size(resp)
	}
	var m dto.Metric
	if err := w.sent.WithLabelValues("/grpc.health.v1.Health/Check").Write(&m); err != nil {
		t.Fatal(err)
	}
	got := m.GetCounter().GetValue()
	if got < float64(size) || got > float64(size+calls*16) {
		t.Fatalf("Check: %v bytes counted for %d responses of %d bytes in all (5-byte frame header each)", got, calls, size)
	}
	ch := make(chan prometheus.Metric, 8)
	w.Collect(ch)
	close(ch)
	if n := len(ch); n != 1 {
		t.Fatalf("%d series, want one (the method called)", n)
	}
}
