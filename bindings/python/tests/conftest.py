"""Fixtures: a private redis-server, a JSON catalog, a Cache per backend.

The library comes from ACACHE_LIBRARY (ctest python sets it to the build's
.so) or LD_LIBRARY_PATH (ctest python-installed);
shared test vectors from ACACHE_SHARED_DIR (default: ../shared beside the
checkout).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# The source tree's package, unless ctest python-installed runs these
# tests against the package pip installed into a venv.
if not os.environ.get("ACACHE_TEST_INSTALLED"):
    sys.path.insert(0, os.path.dirname(HERE))

REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SHARED = os.environ.get("ACACHE_SHARED_DIR") or os.path.join(REPO, "..", "shared")

import aether_cache  # noqa: E402  (after the sys.path tweak)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server we start and therefore may stop (by its PID only)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="acache-py-redis-")
        self.port = free_port()
        self.uri = "redis://127.0.0.1:%d/0" % self.port
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start on port %d" % self.port)
            time.sleep(0.05)

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("redis-server / redis-cli not installed")
    srv = RedisServer()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_redis():
    """A throw-away server for tests that stop it."""
    srv = RedisServer()
    yield srv
    srv.stop()


# Fixed catalog: one user with two API keys, one provider with an endpoint
# and a key, one global model, and usage rows relative to "now".
NOW = time.time()


def catalog_doc(now=NOW):
    def usage(i, user, key, minutes_ago, model="claude-sonnet", read=0):
        return {"id": "u%03d" % i, "user_id": user, "api_key_id": key, "model": model,
                "status": "completed", "created_at": now - minutes_ago * 60,
                "input_tokens": 100, "cache_read_input_tokens": read,
                "cache_creation_input_tokens": 10, "cache_read_cost_usd": 0.001 * (read > 0),
                "cache_creation_cost_usd": 0.0005}
    return {
        "users": [{"id": "user-1", "username": "alice", "email": "alice@example.com"},
                  {"id": "user-2", "username": "bob", "email": "bob@example.com"}],
        "api_keys": [{"id": "ak-1", "user_id": "user-1", "name": "alice main",
                      "is_standalone": False},
                     {"id": "ak-2", "user_id": "user-1", "name": "alice ci",
                      "is_standalone": True},
                     {"id": "ak-3", "user_id": "user-2", "name": "bob"}],
        "providers": [{"id": "prov-1", "name": "anthropic", "display_name": "Anthropic"}],
        "provider_endpoints": [{"id": "ep-1", "provider_id": "prov-1", "api_format": "claude",
                                "base_url": "https://api.example.com"}],
        "provider_api_keys": [{"id": "pk-1", "endpoint_id": "ep-1", "name": "primary",
                               "api_key": "", "rate_multiplier": 1.5}],
        "global_models": [{"id": "gm-1", "name": "claude-sonnet",
                           "display_name": "Claude Sonnet"}],
        "models": [],
        "usage": [usage(1, "user-1", "ak-1", 50), usage(2, "user-1", "ak-1", 47, read=50),
                  usage(3, "user-1", "ak-1", 40, read=80), usage(4, "user-1", "ak-2", 20),
                  usage(5, "user-2", "ak-3", 30), usage(6, "user-2", "ak-3", 10, read=90)],
    }


@pytest.fixture
def catalog_uri(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_doc()))
    return "json://" + str(path)


@pytest.fixture(params=["memory", "redis"])
def store_uri(request):
    if request.param == "memory":
        return "memory://"
    srv = request.getfixturevalue("redis_server")
    srv.cli("FLUSHALL")
    return srv.uri


@pytest.fixture
def cache(store_uri):
    with aether_cache.Cache(store=store_uri) as c:
        yield c


@pytest.fixture
def cat_cache(store_uri, catalog_uri):
    with aether_cache.Cache(store=store_uri, catalog=catalog_uri) as c:
        yield c


@pytest.fixture(scope="session")
def crypto_vectors():
    path = os.path.join(SHARED, "testdata", "aether-crypto", "vectors.json")
    if not os.path.exists(path):
        pytest.skip("shared test vectors not found at %s (set ACACHE_SHARED_DIR)" % path)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def mapping_records():
    path = os.path.join(SHARED, "testdata", "aether-redis", "model-mapping.jsonl")
    if not os.path.exists(path):
        pytest.skip("shared test data not found at %s" % path)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
