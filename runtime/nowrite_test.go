package runtime

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"storesync/api/storev1"
)

// TestNoWritePath: a follower's gRPC listener offers only the read API,
// health and reflection (ApplyBlock is Unimplemented there), and its HTTP
// listener answers GET only.
func TestNoWritePath(t *testing.T) {
	p := startPrimary(t, 50*time.Millisecond)
	f := healthFollower(t, genesisOf(p), []string{p.PublicAddr()}, nil)
	conn, err := grpc.NewClient(f.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	slices.Sort(services)
	want := []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection", "storesync.v1.Store"}
	if !slices.Equal(services, want) {
		t.Fatalf("services on the follower's listener: %v, want only %v", services, want)
	}
	block, err := p.Store().BlockBytes(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storev1.NewInternalClient(conn).ApplyBlock(ctx, &storev1.ApplyBlockRequest{Block: block}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("ApplyBlock on a follower: got %v, want Unimplemented", err)
	}
	for _, path := range []string{"/livez", "/readyz", "/status", "/metrics"} {
		resp, err := http.Post("http://"+f.HTTPAddr()+path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("POST %s: %d, want 405", path, resp.StatusCode)
		}
	}
}
