package proxy_test

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mcptrail/mcptrail/proxy"
	"github.com/mcptrail/mcptrail/recorder"
	"github.com/mcptrail/mcptrail/recorder/redact"
)

// callHops is the events of one tools/call as the gateway records them
// (payloads raw, Unredacted): inbound params, upstream params and result,
// response result, with the call's strings on every hop.
func callHops(i int, secret string) []recorder.Event {
	params := []byte(fmt.Sprintf(`{"name":"crm.search","arguments":{"query":"call %d","password":%q}}`, i, secret))
	upParams := []byte(fmt.Sprintf(`{"name":"search","arguments":{"query":"call %d","password":%q}}`, i, secret))
	result := []byte(fmt.Sprintf(`{"content":[{"type":"text","text":"call %d token=%s"}],"isError":false}`, i, secret))
	base := recorder.Event{Method: "tools/call", Target: "crm.search", RPCID: strconv.Itoa(i), ClientName: "claude-code " + secret,
		ClientVersion: "2.1.0", ProtocolVersion: "2025-11-25", AuthRule: "full", RouteRule: "namespace:crm",
		Attrs: []recorder.Attr{{Key: "upstream.api_key", Value: secret}}, Unredacted: true}
	hops := make([]recorder.Event, 5)
	for h := range hops {
		hops[h] = base
		hops[h].Attrs = append([]recorder.Attr(nil), base.Attrs...)
		hops[h].Hop = recorder.Hop(h + 1)
	}
	hops[0].Params = append([]byte(nil), params...)
	hops[3].Params, hops[3].Result = upParams, append([]byte(nil), result...)
	hops[4].Result = append([]byte(nil), result...)
	return hops
}

// TestEventRedactorSameAsRedactEvent: the memo changes nothing in what is
// recorded: over calls that repeat their strings and results (and a secret
// in each), values over the memo's size limits, and more distinct values
// than it holds (it resets), every event equals RedactEvent's, and no
// secret survives.
func TestEventRedactorSameAsRedactEvent(t *testing.T) {
	r, err := redact.New(redact.Config{}, []byte("memo-key"))
	if err != nil {
		t.Fatal(err)
	}
	m := proxy.NewEventRedactor(r)
	const secret = "sk_live_ABCDEFGHIJKLMNOPQRSTUVWX"
	var all []recorder.Event
	for i := range 300 { // > memoPayloads distinct payloads
		all = append(all, callHops(i%150, secret)...) // each call twice
	}
	big := callHops(1, secret)
	for h := range big { // over the memo's size limits
		if big[h].Params != nil {
			big[h].Params = []byte(`{"q":"` + strings.Repeat("x", 4096) + `","password":"` + secret + `"}`)
		}
		big[h].Target = strings.Repeat("t", 200) + " password=" + secret
	}
	all = append(all, big...)
	for i := range 5000 { // > memoStrings distinct strings
		all = append(all, recorder.Event{Target: "tool-" + strconv.Itoa(i) + " password=" + secret, Unredacted: true})
	}
	for i, e := range all {
		want, got := e, e
		want.Attrs, got.Attrs = append([]recorder.Attr(nil), e.Attrs...), append([]recorder.Attr(nil), e.Attrs...)
		proxy.RedactEvent(r, &want)
		m.Prepare(&got)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: EventRedactor made\n%+v\nRedactEvent made\n%+v", i, got, want)
		}
		if s := fmt.Sprintf("%+v %s %s", got, got.Params, got.Result); strings.Contains(s, secret) {
			t.Fatalf("event %d keeps the secret: %s", i, s)
		}
	}
	// Each event owns its payload: changing one leaves the next one alone.
	a, b := callHops(7, secret), callHops(7, secret)
	m.Prepare(&a[4])
	m.Prepare(&b[4])
	a[4].Result[0] = 'X'
	if b[4].Result[0] == 'X' {
		t.Error("two events share one payload slice")
	}
}

// echoHops is mcptrail bench's call with an n-byte message as the gateway
// records it: the forwarded request carries the gateway's _meta, and so
// does the answer to the client.
func echoHops(i, n int) []recorder.Event {
	const meta = `"_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`
	const stamp = `,"_meta":{"io.mcptrail/request-id":"01JABCDEFGHJKMNPQRSTVWXYZ0"}}`
	msg := fmt.Sprintf("%08d", i)
	msg += strings.Repeat("abcdefghij", (n-len(msg))/10+1)[:n-len(msg)]
	hops := callHops(i, "")
	hops[0].Params = []byte(`{"name":"tb.echo","arguments":{"message":"` + msg + `"}}`)
	hops[3].Params = []byte(`{"name":"echo","arguments":{"message":"` + msg + `"},` + meta + `}`)
	hops[3].Result = []byte(`{"content":[{"type":"text","text":"` + msg + `"}]}`)
	hops[4].Result = append(bytes.Clone(hops[3].Result[:len(hops[3].Result)-1]), stamp...)
	return hops
}

// BenchmarkRedactCall is the recorder's Prepare over the five hops of one
// tools/call with unique payloads (the response's result carries the
// gateway's _meta stamp, as through the gateway): RedactEvent, and the
// EventRedactor the gateway uses. "secrets" has small payloads with a
// secret in each; "echo" and "echo4k" are mcptrail bench's call (a unique
// 200- or 4096-byte message in the arguments, echoed back in the result,
// no secret); "rows" a search answering 60 rows (7 KB) of structured
// content.
func BenchmarkRedactCall(b *testing.B) {
	r, err := redact.New(redact.Config{}, []byte("bench-key"))
	if err != nil {
		b.Fatal(err)
	}
	const stamp = `,"_meta":{"io.mcptrail/request-id":"01JABCDEFGHJKMNPQRSTVWXYZ0"}}`
	shapes := []struct {
		name string
		hops func(i int) []recorder.Event
	}{
		{"secrets", func(i int) []recorder.Event {
			hops := callHops(i, "hunter2")
			hops[4].Result = append(hops[4].Result[:len(hops[4].Result)-1], stamp...)
			return hops
		}},
		{"echo", func(i int) []recorder.Event { return echoHops(i, 200) }},
		{"echo4k", func(i int) []recorder.Event { return echoHops(i, 4096) }},
		{"rows", func(i int) []recorder.Event {
			var rows strings.Builder
			for k := range 60 {
				fmt.Fprintf(&rows, `{"id":%d,"call":%d,"name":"customer %d","email_verified":true,"notes":"renewal follow-up, asked for a call back"},`, k, i, k)
			}
			text := rows.String()
			hops := callHops(i, "")
			hops[0].Params = fmt.Appendf(nil, `{"name":"crm.search","arguments":{"query":"region = 'emea' and call = %d","limit":60}}`, i)
			hops[3].Params = fmt.Appendf(nil, `{"name":"search","arguments":{"query":"region = 'emea' and call = %d","limit":60}}`, i)
			hops[3].Result = []byte(`{"content":[{"type":"text","text":"60 rows"}],"structuredContent":{"rows":[` + text[:len(text)-1] + `]}}`)
			hops[4].Result = append(bytes.Clone(hops[3].Result[:len(hops[3].Result)-1]), stamp...)
			return hops
		}},
	}
	for _, shape := range shapes {
		m := proxy.NewEventRedactor(r)
		for _, tc := range []struct {
			name    string
			prepare func(*recorder.Event)
		}{{"RedactEvent", func(e *recorder.Event) { proxy.RedactEvent(r, e) }}, {"EventRedactor", m.Prepare}} {
			b.Run(shape.name+"/"+tc.name, func(b *testing.B) {
				// Calls are made 256 at a time outside the timer: only
				// Prepare is measured.
				var calls [][]recorder.Event
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if len(calls) == 0 {
						b.StopTimer()
						for k := range 256 {
							calls = append(calls, shape.hops(i+k))
						}
						b.StartTimer()
					}
					hops := calls[len(calls)-1]
					calls = calls[:len(calls)-1]
					for h := range hops {
						tc.prepare(&hops[h])
					}
				}
			})
		}
	}
}
