package aethercache

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestContextCancelledBeforeCall(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		c := open(t, Options{Store: store})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.TouchContext(ctx, Touch{AffinityKey: "ak-c", APIFormat: "claude",
			ModelName: "m", ProviderID: "p", EndpointID: "e", KeyID: "k"}); !errors.Is(err, context.Canceled) {
			t.Fatalf("TouchContext on a cancelled context: %v", err)
		}
		// Nothing was sent: the pin does not exist.
		if _, err := c.Get("ak-c", "claude", "m"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the cancelled touch was applied: %v", err)
		}
		past, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel2()
		if _, err := c.ListAffinitiesContext(past, ListQuery{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ListAffinitiesContext past its deadline: %v", err)
		}
		if err := c.InvalidateSingleContext(past, "a", "b", "c", Filter{}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("InvalidateSingleContext: %v", err)
		}
		if _, err := OpenContext(past, Options{Store: store}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("OpenContext: %v", err)
		}
		// A live context changes nothing.
		ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel3()
		if r := must(c.TouchContext(ctx3, Touch{AffinityKey: "ak-c", APIFormat: "claude",
			ModelName: "m", ProviderID: "p", EndpointID: "e", KeyID: "k"})).ok(t); r != TouchCreated {
			t.Fatalf("TouchContext: %v", r)
		}
		if a := must(c.GetContext(ctx3, "ak-c", "claude", "m")).ok(t); a.KeyID != "k" {
			t.Fatalf("GetContext: %+v", a)
		}
		if _, err := c.GetContext(ctx3, "nobody", "claude", "m"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetContext miss: %v", err)
		}
		c2 := must(OpenContext(ctx3, Options{Store: store})).ok(t)
		c2.Close()
	})
}

// A call blocked in Redis (CLIENT PAUSE on our private server) returns at the
// context's deadline, not at the end of the pause; the C call finishes in the
// background and Close waits for it.
func TestContextDeadlineDuringCall(t *testing.T) {
	r := startRedis(t)
	c, err := Open(Options{Store: r.uri, L1TTL: -1, CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pin(t, c, "ak-1", "m")
	if got := r.cli(t, "CLIENT", "PAUSE", "1500", "ALL"); got != "OK" {
		t.Fatalf("CLIENT PAUSE: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.GetContext(ctx, "ak-1", "claude", "m")
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetContext during a pause: %v after %v", err, took)
	}
	if took > time.Second {
		t.Fatalf("GetContext returned after %v, not at its 200 ms deadline", took)
	}
	// The abandoned call completes once the pause ends; Close waits for it.
	c.Close()
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("Close returned after %v, before the abandoned call could finish", waited)
	}
	if _, err := c.GetContext(context.Background(), "ak-1", "claude", "m"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestGoNamesAndString(t *testing.T) {
	cases := []struct {
		v    interface{ String() string }
		want string
	}{
		{StatusNotFound, "StatusNotFound"}, {StatusOK, "StatusOK"},
		{StatusNoMemory, "StatusNoMemory"}, {Status(-99), "Status(-99)"},
		{TouchCreated, "TouchCreated"}, {TouchResult(42), "TouchResult(42)"},
		{TargetAPIKey, "TargetAPIKey"}, {ReservationStable, "ReservationStable"},
		{OutcomeTransient, "OutcomeTransient"}, {ReportNotPinned, "ReportNotPinned"},
	}
	for _, tc := range cases {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.v, got, tc.want)
		}
	}
	if StatusNotFound != -2 || TargetAPIKey != 2 {
		t.Fatal("renamed constants changed value")
	}
}

func TestTimestampsAreTimes(t *testing.T) {
	forEachStore(t, func(t *testing.T, store string) {
		before := time.Now().Add(-2 * time.Second)
		c := open(t, Options{Store: store, DefaultTTL: time.Minute})
		pin(t, c, "ak-1", "m")
		a := must(c.Get("ak-1", "claude", "m")).ok(t)
		if a.CreatedAt.Before(before) || a.CreatedAt.After(time.Now().Add(2*time.Second)) {
			t.Fatalf("CreatedAt %v not now", a.CreatedAt)
		}
		if d := a.ExpireAt.Sub(a.CreatedAt); d < 59*time.Second || d > 61*time.Second {
			t.Fatalf("ExpireAt - CreatedAt = %v", d)
		}
		// JSON keeps the library's form: epoch seconds as numbers.
		b := must(json.Marshal(a)).ok(t)
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		if _, ok := raw["created_at"].(float64); !ok {
			t.Fatalf("JSON form: %s", b)
		}
		var back Affinity
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if d := back.CreatedAt.Sub(a.CreatedAt); d > time.Microsecond || d < -time.Microsecond {
			t.Fatalf("round trip moved CreatedAt by %v", d)
		}
		// The listing decodes the same numbers into time.Time.
		l := must(c.ListAffinities(ListQuery{})).ok(t)
		if len(l.Items) != 1 || l.Items[0].CreatedAt.Sub(a.CreatedAt).Abs() > time.Millisecond {
			t.Fatalf("listing %+v vs %v", l.Items, a.CreatedAt)
		}
	})
}
