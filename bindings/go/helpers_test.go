package aethercache

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// redisServer is a private redis-server on a free port, stopped (by its
// PID) in t.Cleanup.
type redisServer struct {
	port int
	uri  string
	cmd  *exec.Cmd
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	port := freePort(t)
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisServer{port: port, uri: fmt.Sprintf("redis://127.0.0.1:%d/0", port), cmd: cmd}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for r.cli(t, "PING") != "PONG" {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not start on port %d", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

func (r *redisServer) stop() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

func (r *redisServer) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, _ := exec.Command("redis-cli", append([]string{"-p", fmt.Sprint(r.port)},
		args...)...).Output()
	return strings.TrimSpace(string(out))
}

// forEachStore runs f against memory:// and a fresh private redis-server.
func forEachStore(t *testing.T, f func(t *testing.T, store string)) {
	t.Run("memory", func(t *testing.T) { f(t, "memory://") })
	t.Run("redis", func(t *testing.T) { f(t, startRedis(t).uri) })
}

func open(t *testing.T, o Options) *Cache {
	t.Helper()
	c, err := Open(o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// must(f()).ok(t) unwraps a (value, error) pair or fails the test.
type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) ok(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func pin(t *testing.T, c *Cache, key, model string) TouchResult {
	t.Helper()
	return must(c.Touch(Touch{AffinityKey: key, APIFormat: "claude", ModelName: model,
		ProviderID: "prov-1", EndpointID: "ep-1", KeyID: "pk-1"})).ok(t)
}

// writeCatalog writes the JSON catalog shared with the Python tests' shape:
// alice (ak-1, ak-2), bob (ak-3), one provider, usage rows relative to now.
func writeCatalog(t *testing.T) string {
	t.Helper()
	now := float64(time.Now().UnixNano()) / 1e9
	usage := func(i int, user, key string, minutesAgo float64, read int) map[string]any {
		readCost := 0.0
		if read > 0 {
			readCost = 0.001
		}
		return map[string]any{"id": fmt.Sprintf("u%03d", i), "user_id": user,
			"api_key_id": key, "model": "claude-sonnet", "status": "completed",
			"created_at": now - minutesAgo*60, "input_tokens": 100,
			"cache_read_input_tokens": read, "cache_creation_input_tokens": 10,
			"cache_read_cost_usd": readCost, "cache_creation_cost_usd": 0.0005}
	}
	doc := map[string]any{
		"users": []any{
			map[string]any{"id": "user-1", "username": "alice", "email": "alice@example.com"},
			map[string]any{"id": "user-2", "username": "bob", "email": "bob@example.com"}},
		"api_keys": []any{
			map[string]any{"id": "ak-1", "user_id": "user-1", "name": "alice main"},
			map[string]any{"id": "ak-2", "user_id": "user-1", "name": "alice ci",
				"is_standalone": true},
			map[string]any{"id": "ak-3", "user_id": "user-2", "name": "bob"}},
		"providers": []any{map[string]any{"id": "prov-1", "name": "anthropic",
			"display_name": "Anthropic"}},
		"provider_endpoints": []any{map[string]any{"id": "ep-1", "provider_id": "prov-1",
			"api_format": "claude", "base_url": "https://api.example.com"}},
		"provider_api_keys": []any{map[string]any{"id": "pk-1", "endpoint_id": "ep-1",
			"name": "primary", "api_key": "", "rate_multiplier": 1.5}},
		"global_models": []any{map[string]any{"id": "gm-1", "name": "claude-sonnet",
			"display_name": "Claude Sonnet"}},
		"usage": []any{usage(1, "user-1", "ak-1", 50, 0), usage(2, "user-1", "ak-1", 47, 50),
			usage(3, "user-1", "ak-1", 40, 80), usage(4, "user-1", "ak-2", 20, 0),
			usage(5, "user-2", "ak-3", 30, 0), usage(6, "user-2", "ak-3", 10, 90)},
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "catalog.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return "json://" + path
}

func sharedFile(t *testing.T, rel string) string {
	t.Helper()
	dir := os.Getenv("ACACHE_SHARED_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared")
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("shared test data not found at %s (set ACACHE_SHARED_DIR)", p)
	}
	return p
}

func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
