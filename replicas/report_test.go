package replicas

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// sampleReport is a valid report using every field.
func sampleReport() Report {
	return Report{
		ID: "store-A_1", Addr: "10.0.0.1:7000", Committed: 1 << 40, Proven: 1<<40 - 3,
		Below: []Entry{
			{ID: "b", Parent: "store-A_1", Addr: "b.example:1", Committed: 7, Proven: 5, Depth: 1, AgeMS: 0, Verified: true},
			{ID: "c", Parent: "b", Addr: "", Committed: 6, Proven: 0, Depth: MaxDepth, AgeMS: 1500},
		},
		Overflow: 3,
	}
}

func TestMetadataKeyIsBinary(t *testing.T) {
	// gRPC only carries arbitrary bytes in keys ending in -bin.
	if !strings.HasSuffix(MetadataKey, "-bin") {
		t.Fatalf("MetadataKey %q does not end in -bin", MetadataKey)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cases := map[string]Report{
		"full":          sampleReport(),
		"minimal":       {ID: "x"},
		"longest id":    {ID: strings.Repeat("a", maxIDLen), Addr: strings.Repeat("h", maxAddrLen)},
		"json specials": {ID: "x", Addr: `<&>"\{}[]:,~!`},
		"max entries": func() Report {
			r := Report{ID: "x"}
			for i := range MaxEntries {
				r.Below = append(r.Below, Entry{ID: fmt.Sprintf("e%d", i), Parent: "x", Depth: 1})
			}
			return r
		}(),
	}
	for name, want := range cases {
		t.Run(name, func(t *testing.T) {
			b := Encode(want)
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(r)): %v\n%s", err, b)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip changed the report:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeAcceptsExactlyMaxBytes(t *testing.T) {
	b := Encode(Report{ID: "x"})
	b = append(b, bytes.Repeat([]byte(" "), MaxReportBytes-len(b))...)
	if len(b) != MaxReportBytes {
		t.Fatalf("built %d bytes", len(b))
	}
	r, err := Decode(b)
	if err != nil || r.ID != "x" {
		t.Fatalf("Decode of exactly MaxReportBytes = %+v, %v; want accepted", r, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	entry := func(mod func(*Entry)) string {
		e := Entry{ID: "b", Parent: "a", Addr: "b:1", Depth: 1}
		mod(&e)
		return string(Encode(Report{ID: "a", Below: []Entry{{ID: "ok", Parent: "a", Depth: 1}, e}}))
	}
	report := func(mod func(*Report)) string {
		r := Report{ID: "a", Addr: "a:1"}
		mod(&r)
		return string(Encode(r))
	}
	valid := Encode(Report{ID: "x"})
	oversize := append(bytes.Clone(valid), bytes.Repeat([]byte(" "), MaxReportBytes+1-len(valid))...)
	tooMany := report(func(r *Report) {
		for i := range MaxEntries + 1 {
			r.Below = append(r.Below, Entry{ID: fmt.Sprint(i), Parent: "a", Depth: 1})
		}
	})

	cases := []struct {
		name, in string
		want     string // in the error message: the field at fault
	}{
		{"oversize", string(oversize), fmt.Sprintf("%d bytes, at most %d", MaxReportBytes+1, MaxReportBytes)},
		{"truncated json", `{"id":"a"`, "unexpected end of JSON input"},
		{"not an object", `[1,2]`, "cannot unmarshal array"},
		{"wrong type", `{"id":"a","c":"seven"}`, "Report.c"},
		{"negative tip", `{"id":"a","c":-1}`, "Report.c"},
		{"wrong entry type", `{"id":"a","below":[{"id":"b","up":"a","d":"one"}]}`, "below.d"},
		{"empty input", ``, "unexpected end of JSON input"},
		{"null", `null`, "id has 0 characters"},
		{"no id", `{}`, "id has 0 characters"},
		{"empty id", report(func(r *Report) { r.ID = "" }), "id has 0 characters"},
		{"id too long", report(func(r *Report) { r.ID = strings.Repeat("a", maxIDLen+1) }), fmt.Sprintf("id has %d characters", maxIDLen+1)},
		{"id with space", report(func(r *Report) { r.ID = "a b" }), `id "a b"`},
		{"id with dot", report(func(r *Report) { r.ID = "a.b" }), `id "a.b"`},
		{"id with colon", report(func(r *Report) { r.ID = "h:1" }), `id "h:1"`},
		{"id non-ascii", report(func(r *Report) { r.ID = "é" }), `id "é"`},
		{"addr with space", report(func(r *Report) { r.Addr = "h 1:2" }), `addr "h 1:2"`},
		{"addr with tab", report(func(r *Report) { r.Addr = "h\t:2" }), `addr "h\t:2"`},
		{"addr non-ascii", report(func(r *Report) { r.Addr = "hé:2" }), `addr "hé:2"`},
		{"addr DEL", report(func(r *Report) { r.Addr = "h\x7f" }), `addr "h\x7f"`},
		{"addr too long", report(func(r *Report) { r.Addr = strings.Repeat("h", maxAddrLen+1) }), fmt.Sprintf("addr has %d characters", maxAddrLen+1)},
		{"too many below", tooMany, fmt.Sprintf("%d stores below, at most %d", MaxEntries+1, MaxEntries)},
		{"negative overflow", report(func(r *Report) { r.Overflow = -1 }), "overflow -1"},
		{"entry depth 0", entry(func(e *Entry) { e.Depth = 0 }), fmt.Sprintf("below[1].d 0, want 1 to %d", MaxDepth)},
		{"entry depth negative", entry(func(e *Entry) { e.Depth = -1 }), "below[1].d -1"},
		{"entry too deep", entry(func(e *Entry) { e.Depth = MaxDepth + 1 }), fmt.Sprintf("below[1].d %d", MaxDepth+1)},
		{"entry negative age", entry(func(e *Entry) { e.AgeMS = -1 }), "below[1].age -1"},
		{"entry empty id", entry(func(e *Entry) { e.ID = "" }), "below[1].id has 0 characters"},
		{"entry bad id", entry(func(e *Entry) { e.ID = "b!" }), `below[1].id "b!"`},
		{"entry empty parent", entry(func(e *Entry) { e.Parent = "" }), "below[1].up has 0 characters"},
		{"entry bad parent", entry(func(e *Entry) { e.Parent = "not an id" }), `below[1].up "not an id"`},
		{"entry parent too long", entry(func(e *Entry) { e.Parent = strings.Repeat("p", maxIDLen+1) }), fmt.Sprintf("below[1].up has %d", maxIDLen+1)},
		{"entry bad addr", entry(func(e *Entry) { e.Addr = "b 1" }), `below[1].addr "b 1"`},
		{"entry addr too long", entry(func(e *Entry) { e.Addr = strings.Repeat("b", maxAddrLen+1) }), fmt.Sprintf("below[1].addr has %d", maxAddrLen+1)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Decode([]byte(c.in))
			if err == nil {
				t.Fatalf("Decode accepted %q as %+v", c.in, r)
			}
			if !errors.Is(err, ErrBadReport) {
				t.Errorf("error %q does not wrap ErrBadReport", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if !reflect.DeepEqual(r, Report{}) {
				t.Errorf("rejected report came back non-zero: %+v", r)
			}
		})
	}
}

// FuzzDecodeReport checks that Decode never panics, rejects only with
// ErrBadReport, and that what it accepts survives being encoded again.
func FuzzDecodeReport(f *testing.F) {
	f.Add(Encode(sampleReport()))
	f.Add(Encode(Report{ID: "x"}))
	f.Add([]byte(`{"id":"a","below":[]}`)) // empty list: decodes non-nil, encodes omitted
	f.Add([]byte(`{"id":"a","addr":"<&>"}`))
	f.Add([]byte(`{"ID":"a","Below":[{"Id":"b","UP":"a","D":1}]}`)) // keys match case-insensitively
	f.Add([]byte(`{"id":"a","below":[{"id":"b","up":"a","d":0}]}`))
	f.Add([]byte(`{"id":"a","overflow":-1}`))
	f.Add([]byte(`{"id":"a b"}`))
	f.Add([]byte(`{"id":"a","below":[{"id":"b","up":"a","d":1,"age":-5}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := Decode(in)
		if err != nil {
			if !errors.Is(err, ErrBadReport) {
				t.Fatalf("rejection %q does not wrap ErrBadReport", err)
			}
			if !reflect.DeepEqual(r, Report{}) {
				t.Fatalf("rejected report came back non-zero: %+v", r)
			}
			return
		}
		if len(in) > MaxReportBytes {
			t.Fatalf("accepted %d bytes", len(in))
		}
		if len(r.Below) > MaxEntries || r.Overflow < 0 {
			t.Fatalf("accepted out of bounds: %d entries, overflow %d", len(r.Below), r.Overflow)
		}
		enc := Encode(r)
		r2, err := Decode(enc)
		if len(enc) > MaxReportBytes {
			// It can grow: the input may leave out zero fields, or carry
			// '<', '>' and '&' that Encode escapes to six bytes each.
			// Then only the size bound may reject it.
			if !errors.Is(err, ErrBadReport) || !strings.Contains(err.Error(), "bytes, at most") {
				t.Fatalf("re-encoded %d bytes: Decode = %v, want the size rejection", len(enc), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Decode accepted %q but not its encoding %q: %v", in, enc, err)
		}
		want := r
		if len(want.Below) == 0 {
			want.Below = nil // an empty list is left out of the encoding
		}
		if !reflect.DeepEqual(r2, want) {
			t.Fatalf("round trip changed the report:\n got %+v\nwant %+v", r2, want)
		}
		if enc2 := Encode(r2); !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
