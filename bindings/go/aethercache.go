// Package aethercache is the Go binding of libaethercache, the prompt-cache
// affinity state of an Aether-compatible LLM gateway.
//
// A Cache wraps one thread-safe C handle and may be used from any number of
// goroutines. Failures are *Error values that match the sentinels with
// errors.Is (ErrNotFound, ErrInvalid, ErrStore, ...). Each call that may
// fail runs with its goroutine locked to its OS thread, so the C library's
// thread-local last error is read on the thread that set it.
//
// # Contexts
//
// Every call that reaches Redis or PostgreSQL has a form taking a
// context.Context first (OpenContext, GetContext, TouchContext,
// ListAffinitiesContext, TTLAnalysisContext, ...); the form without one is
// that call with context.Background(). What a context can and cannot do:
//
//   - A context already cancelled or past its deadline stops the call before
//     it starts: nothing is sent, and ctx.Err() is returned.
//   - A C call in flight cannot be interrupted, and the C API has no per-call
//     deadline to map the context's onto. When the context ends during the
//     call, the method returns ctx.Err() at once while the C call runs to
//     completion in the background (its result discarded, its memory freed
//     when it returns). A write (Touch, Report, an Invalidate) abandoned this
//     way may or may not have happened: treat it as a timeout. Close waits
//     for such calls too.
//   - What bounds a call in flight is the handle's ConnectTimeout and
//     CommandTimeout (Options), per Redis round trip: set them below your
//     request deadlines.
//
// A context without a Done channel (context.Background) costs nothing; one
// with a Done channel costs a goroutine per call.
//
// # Timestamps
//
// CreatedAt and ExpireAt are time.Time; in JSON (MarshalJSON/UnmarshalJSON)
// they keep the library's and Aether's form, epoch seconds as numbers.
package aethercache

/*
#cgo pkg-config: aether-cache
#include <stdlib.h>
#include <string.h>
#include <aether_cache/aether_cache.h>
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// BindingVersion is the library version this binding was written for; Open
// refuses a library whose major.minor differs.
const BindingVersion = VersionString

// Version is the version string of the loaded libaethercache.
func Version() string { return C.GoString(C.acache_version()) }

func statusText(s Status) string { return C.GoString(C.acache_strerror(C.int(s))) }

// HTTPStatus is the HTTP status an admin server answers for a library status.
func HTTPStatus(s Status) int { return int(C.acache_http_status(C.int(s))) }

func checkVersion() error {
	lib := Version()
	if majorMinor(lib) != majorMinor(BindingVersion) {
		return &Error{Status: StatusInvalid, Message: fmt.Sprintf(
			"binding %s needs libaethercache %s.x, loaded %s",
			BindingVersion, majorMinor(BindingVersion), lib)}
	}
	return nil
}

func majorMinor(v string) string {
	p := strings.SplitN(v, ".", 3)
	if len(p) < 2 {
		return v
	}
	return p[0] + "." + p[1]
}

// lastError builds the error of a failed call. Call it on the thread that
// made the call, before any other library call (the OS thread is locked).
func lastError(rc C.int) error {
	return &Error{Status: Status(rc), Message: C.GoString(C.acache_last_error())}
}

// Options for Open. Zero values take the library defaults.
type Options struct {
	Store               string        // "" = "memory://"; redis://[[user]:pw@]host[:port][/db][?db=N], rediss://..., unix:///path
	Catalog             string        // "" = none; json:///path, a path, or postgresql://...
	EncryptionKey       string        // Aether's ENCRYPTION_KEY ("" = none)
	UseDevEncryptionKey bool          // with no EncryptionKey, use Aether's development key
	DefaultTTL          time.Duration // affinity TTL, whole seconds; 0 = 300 s
	L1TTL               time.Duration // L1 cache in front of Redis; 0 = 3 s, < 0 = off
	L1MaxEntries        int           // 0 = 1000, < 0 = off
	ConnectTimeout      time.Duration // 0 = 2 s
	CommandTimeout      time.Duration // 0 = 2 s
	MappingListCap      int           // model-mapping stats entries listed; 0 = 100
	MappingTTL          time.Duration // model-mapping cache TTL reported; 0 = 300 s
}

// Cache is an open libaethercache handle. Safe for concurrent use; Close
// waits for calls in flight, and later calls return ErrClosed.
type Cache struct {
	mu sync.RWMutex
	h  *C.acache
}

type cstrings []*C.char

func (cs *cstrings) str(s string) *C.char {
	p := C.CString(s)
	*cs = append(*cs, p)
	return p
}

// opt is str() with "" meaning NULL (an absent optional argument).
func (cs *cstrings) opt(s string) *C.char {
	if s == "" {
		return nil
	}
	return cs.str(s)
}

func (cs *cstrings) free() {
	for _, p := range *cs {
		C.free(unsafe.Pointer(p))
	}
	*cs = nil
}

// Open connects to the store and catalog named by opts.
func Open(opts Options) (*Cache, error) {
	if err := checkVersion(); err != nil {
		return nil, err
	}
	// The loaded library's struct may be larger than this header's (fields
	// appended later): allocate its size and let it fill the defaults.
	size := C.size_t(C.acache_options_size())
	if size < C.sizeof_acache_options {
		size = C.sizeof_acache_options
	}
	o := (*C.acache_options)(C.calloc(1, size))
	if o == nil {
		return nil, ErrNoMemory
	}
	defer C.free(unsafe.Pointer(o))
	var cs cstrings
	defer cs.free()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := C.acache_options_init(o, C.ACACHE_OPTIONS_VERSION); rc < 0 {
		return nil, lastError(rc)
	}
	o.store_uri = cs.opt(opts.Store)
	o.catalog_uri = cs.opt(opts.Catalog)
	o.default_ttl_s = C.uint32_t(opts.DefaultTTL / time.Second)
	switch {
	case opts.L1TTL < 0:
		o.l1_ttl_ms = -1
	default:
		o.l1_ttl_ms = C.int32_t(opts.L1TTL / time.Millisecond)
	}
	o.l1_max_entries = C.int32_t(opts.L1MaxEntries)
	o.connect_timeout_ms = C.uint32_t(opts.ConnectTimeout / time.Millisecond)
	o.command_timeout_ms = C.uint32_t(opts.CommandTimeout / time.Millisecond)
	if opts.EncryptionKey != "" {
		// Copied (and later wiped) by acache_open; our copy is wiped below.
		k := C.CString(opts.EncryptionKey)
		defer func() {
			C.memset(unsafe.Pointer(k), 0, C.size_t(len(opts.EncryptionKey)))
			C.free(unsafe.Pointer(k))
		}()
		o.encryption_key = k
	}
	if opts.UseDevEncryptionKey {
		o.use_dev_encryption_key = 1
	}
	o.mapping_list_cap = C.uint32_t(opts.MappingListCap)
	o.mapping_ttl_s = C.uint32_t(opts.MappingTTL / time.Second)

	var h *C.acache
	if rc := C.acache_open(&h, o); rc < 0 {
		return nil, lastError(rc)
	}
	return &Cache{h: h}, nil
}

// Close frees the handle. Idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h != nil {
		C.acache_close(c.h)
		c.h = nil
	}
	return nil
}

// call runs f on the open handle with the goroutine locked to its thread and
// turns a negative status into an *Error.
func (c *Cache) call(f func(h *C.acache) C.int) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h == nil {
		return ErrClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if rc := f(c.h); rc < 0 {
		return lastError(rc)
	}
	return nil
}

// text runs a function filling an acache_buf and returns its content.
func (c *Cache) text(f func(out *C.acache_buf, h *C.acache) C.int) (string, error) {
	var buf C.acache_buf
	err := c.call(func(h *C.acache) C.int { return f(&buf, h) })
	defer C.acache_buf_dispose(&buf)
	if err != nil {
		return "", err
	}
	return C.GoStringN(buf.ptr, C.int(buf.size)), nil
}

// decode runs a JSON-returning function and unmarshals its body into v.
func (c *Cache) decode(v interface{}, f func(out *C.acache_buf, h *C.acache) C.int) error {
	var buf C.acache_buf
	err := c.call(func(h *C.acache) C.int { return f(&buf, h) })
	defer C.acache_buf_dispose(&buf)
	if err != nil {
		return err
	}
	b := C.GoBytes(unsafe.Pointer(buf.ptr), C.int(buf.size))
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("aethercache: decoding the library's JSON: %w", err)
	}
	return nil
}

// data unwraps the admin envelope {"status": "ok", "data": ...}.
func (c *Cache) data(v interface{}, f func(out *C.acache_buf, h *C.acache) C.int) error {
	env := struct {
		Data json.RawMessage `json:"data"`
	}{}
	if err := c.decode(&env, f); err != nil {
		return err
	}
	return json.Unmarshal(env.Data, v)
}

func (c *Cache) void(f func(h *C.acache)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.h != nil {
		f(c.h)
	}
}

// StoreType is "memory" or "redis" ("" once closed).
func (c *Cache) StoreType() string {
	var s string
	c.void(func(h *C.acache) { s = C.GoString(C.acache_store_type(h)) })
	return s
}
