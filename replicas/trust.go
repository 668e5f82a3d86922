package replicas

import (
	"fmt"
	"strings"
)

// Trust decides which reporters count toward the watermark when no client
// certificate vouches for them: the read API is public, and any client can
// claim to be a follower. A report counts if its reporter's id or the
// address it says it serves on is listed, or if "any" is. Without client
// certificates this is an operator's list, not authentication: a client
// that knows a listed id can claim it (ids are shown in /status). With
// client certificates on, the certificate vouches instead.
type Trust struct {
	any   bool
	names map[string]bool
}

// ParseTrust reads --follower values: ids, host:port addresses, or "any".
func ParseTrust(list []string) (Trust, error) {
	t := Trust{names: map[string]bool{}}
	for _, v := range list {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "":
				continue
			case name == "any":
				t.any = true
			case checkID("", name) == nil || checkAddr("", name) == nil && strings.Contains(name, ":"):
				t.names[name] = true
			default:
				return Trust{}, fmt.Errorf("--follower %q: want a store id, a host:port address or \"any\"", name)
			}
		}
	}
	return t, nil
}

// vouch returns who vouches for a reporter without a certificate: "any",
// "listed", or "" (nobody).
func (t Trust) vouch(r Report) string {
	switch {
	case t.any:
		return "any"
	case t.names[r.ID] || r.Addr != "" && t.names[r.Addr]:
		return "listed"
	}
	return ""
}
