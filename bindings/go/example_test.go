package aethercache_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	aethercache "github.com/aether-cache/libaethercache/bindings/go"
)

// A gateway records the target that served a request, and routes the next
// request of the same client key, format and model to it.
func Example() {
	c, err := aethercache.Open(aethercache.Options{Store: "memory://"}) // or redis://host:6379/0
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	served := aethercache.Touch{AffinityKey: "api-key-1", APIFormat: "claude",
		ModelName: "claude-sonnet", ProviderID: "anthropic", EndpointID: "ep-1", KeyID: "key-1"}
	r, err := c.Touch(served)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r)

	pin, err := c.Get("api-key-1", "claude", "claude-sonnet")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pin.ProviderID, pin.EndpointID, pin.KeyID, pin.RequestCount)
	fmt.Println(pin.ExpireAt.Sub(pin.CreatedAt).Round(time.Second))
	// Output:
	// TouchCreated
	// anthropic ep-1 key-1 1
	// 5m0s
}

// GetContext gives up when the request's context ends; a miss is ErrNotFound.
func ExampleCache_GetContext() {
	c, err := aethercache.Open(aethercache.Options{Store: "memory://"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.GetContext(ctx, "api-key-1", "claude", "claude-sonnet")
	fmt.Println(errors.Is(err, aethercache.ErrNotFound))

	cancel()
	_, err = c.GetContext(ctx, "api-key-1", "claude", "claude-sonnet")
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// true
	// true
}

// Report tells the cache how a request ended: transient failures in a row
// drop the pin at the handle's limit (3 by default), a terminal one at once.
func ExampleCache_Report() {
	c, err := aethercache.Open(aethercache.Options{Store: "memory://"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	t := aethercache.Touch{AffinityKey: "api-key-1", APIFormat: "claude",
		ModelName: "claude-sonnet", ProviderID: "anthropic", EndpointID: "ep-1", KeyID: "key-1"}
	for _, o := range []aethercache.Outcome{aethercache.OutcomeSuccess,
		aethercache.OutcomeTransient, aethercache.OutcomeTerminal} {
		r, err := c.Report(t, o)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(o, r.Action, r.Failures)
	}
	// Output:
	// OutcomeSuccess ReportCreated 0
	// OutcomeTransient ReportKept 1
	// OutcomeTerminal ReportDropped 2
}

// Removing every pin to a provider, e.g. when it is disabled.
func ExampleCache_InvalidateProvider() {
	c, err := aethercache.Open(aethercache.Options{Store: "memory://"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, model := range []string{"claude-sonnet", "claude-haiku"} {
		if _, err := c.Touch(aethercache.Touch{AffinityKey: "api-key-1", APIFormat: "claude",
			ModelName: model, ProviderID: "anthropic", EndpointID: "ep-1", KeyID: "key-1"}); err != nil {
			log.Fatal(err)
		}
	}
	n, err := c.InvalidateProvider("anthropic")
	fmt.Println(n, err)
	// Output: 2 <nil>
}

// Errors carry the library's status; match them with errors.Is.
func ExampleError() {
	c, err := aethercache.Open(aethercache.Options{Store: "memory://"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Get("nobody", "claude", "claude-sonnet")
	var e *aethercache.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, aethercache.HTTPStatus(e.Status))
	}
	fmt.Println(errors.Is(err, aethercache.ErrNotFound))
	// Output:
	// StatusNotFound 404
	// true
}

// Masking a provider key for display, as Aether's admin pages do.
func ExampleMaskKey() {
	masked, err := aethercache.MaskKey("sk-ant-api03-abcdefghijklmnop", 8, 4)
	fmt.Println(masked, err)
	// Output: sk-ant-a********mnop <nil>
}
