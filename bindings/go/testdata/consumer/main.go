// Command consumer uses the binding the way an application does: from its
// own module, with a replace directive pointing at bindings/go (ctest
// go-consumer builds it outside the tree with GOPROXY=off and runs it).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	aethercache "github.com/aether-cache/libaethercache/bindings/go"
)

func main() {
	store := os.Getenv("ACACHE_STORE")
	if store == "" {
		store = "memory://"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := aethercache.OpenContext(ctx, aethercache.Options{Store: store})
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
	defer c.Close()
	r, err := c.TouchContext(ctx, aethercache.Touch{AffinityKey: "consumer-key",
		APIFormat: "claude", ModelName: "claude-sonnet", ProviderID: "prov", EndpointID: "ep",
		KeyID: "pk"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
	pin, err := c.GetContext(ctx, "consumer-key", "claude", "claude-sonnet")
	if err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
	_, err = c.GetContext(ctx, "nobody", "claude", "claude-sonnet")
	fmt.Printf("library %s binding %s\n", aethercache.Version(), aethercache.BindingVersion)
	fmt.Printf("touch %v pin %s/%s/%s ttl %v miss %v\n", r, pin.ProviderID, pin.EndpointID,
		pin.KeyID, pin.ExpireAt.Sub(pin.CreatedAt).Round(time.Second),
		errors.Is(err, aethercache.ErrNotFound))
}
