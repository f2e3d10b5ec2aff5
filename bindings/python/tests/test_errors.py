"""Status codes -> exceptions, messages, version check, generated constants."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import aether_cache as ac
from aether_cache import Cache, Status
from aether_cache.errors import error_for

from conftest import REPO, free_port

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_status_maps_to_its_exception():
    want = {
        Status.ERROR: (ac.AetherCacheError, Exception),
        Status.ENOTFOUND: (ac.NotFoundError, LookupError),
        Status.EINVALID: (ac.InvalidArgumentError, ValueError),
        Status.ESTORE: (ac.StoreUnavailableError, ConnectionError),
        Status.ECATALOG: (ac.CatalogUnavailableError, ConnectionError),
        Status.ECRYPTO: (ac.CryptoError, ac.AetherCacheError),
        Status.ENOMEM: (ac.OutOfMemoryError, MemoryError),
        Status.EUNSUPPORTED: (ac.UnsupportedError, ac.AetherCacheError),
    }
    assert set(want) == set(Status) - {Status.OK}
    for status, (cls, base) in want.items():
        e = error_for(int(status), "why")
        assert type(e) is cls and isinstance(e, base) and isinstance(e, ac.AetherCacheError)
        assert e.status == status and e.message == "why"
    assert type(error_for(-99, "")) is ac.AetherCacheError


def test_strerror_and_http_status():
    assert ac.strerror(Status.ENOTFOUND) == "not found"
    assert ac.strerror(-1234) == "unknown status"
    assert ac.http_status(Status.OK) == 200
    assert ac.http_status(Status.ENOTFOUND) == 404
    assert ac.http_status(Status.EINVALID) == 422
    assert ac.http_status(Status.ESTORE) == 503


def test_open_errors(tmp_path):
    with pytest.raises(ac.InvalidArgumentError) as ei:
        Cache(store="bogus://nowhere")
    assert ei.value.status == Status.EINVALID and ei.value.message
    with pytest.raises(ac.StoreUnavailableError) as ei:
        Cache(store="redis://127.0.0.1:%d/0" % free_port(), connect_timeout_ms=300)
    assert isinstance(ei.value, ConnectionError) and ei.value.message
    bad = tmp_path / "catalog.json"
    bad.write_text("{not json")
    with pytest.raises(ac.CatalogUnavailableError):
        Cache(catalog=str(bad))
    with pytest.raises(ac.CryptoError):
        Cache(encryption_key="")


def test_invalid_arguments(cache):
    with pytest.raises(ac.InvalidArgumentError) as ei:
        cache.get("a:b", "claude", "m")
    assert ei.value.message
    with pytest.raises(ac.InvalidArgumentError):
        cache.touch(affinity_key="k", api_format="", model_name="m", provider_id="p",
                    endpoint_id="e", key_id="x")
    with pytest.raises(ac.InvalidArgumentError):
        cache.get("k", "claude", "")


def test_store_down_mid_operation(fresh_redis):
    with Cache(store=fresh_redis.uri, l1_ttl_ms=-1, connect_timeout_ms=300,
               command_timeout_ms=300) as c:
        c.touch(affinity_key="k", api_format="claude", model_name="m", provider_id="p",
                endpoint_id="e", key_id="x")
        fresh_redis.stop()
        with pytest.raises(ac.StoreUnavailableError) as ei:
            c.touch(affinity_key="k", api_format="claude", model_name="m", provider_id="p",
                    endpoint_id="e", key_id="x")
        assert ei.value.status == Status.ESTORE and ei.value.message
        with pytest.raises(ConnectionError):
            c.get("k", "claude", "m")


def test_message_is_read_from_the_failing_call(cache):
    with pytest.raises(ac.NotFoundError) as first:
        cache.get("first-key", "claude", "m")
    cache.touch(affinity_key="ok", api_format="claude", model_name="m", provider_id="p",
                endpoint_id="e", key_id="x")  # success keeps no stale message
    with pytest.raises(ac.NotFoundError) as second:
        cache.get("second-key", "claude", "m")
    assert "first-key" in first.value.message
    assert "second-key" in second.value.message


def test_constants_are_up_to_date():
    gen = os.path.join(REPO, "bindings", "gen_constants.py")
    r = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ac.constants.ACACHE_VERSION_STRING == ac.__version__


def test_library_version_matches_binding():
    assert ac.library_version().split(".")[:2] == ac.__version__.split(".")[:2]


def _import_with(lib_path):
    env = dict(os.environ, ACACHE_LIBRARY=str(lib_path), PYTHONPATH=PKG_DIR)
    return subprocess.run([sys.executable, "-c", "import aether_cache"], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler for the fake library")
def test_version_mismatch_refuses_to_import(tmp_path):
    src = tmp_path / "fake.c"
    src.write_text(textwrap.dedent("""
        const char *acache_version(void);
        const char *acache_version(void) { return "9.9.0"; }
    """))
    so = tmp_path / "libfake.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    r = _import_with(so)
    assert r.returncode != 0
    assert "ImportError" in r.stderr and "9.9.0" in r.stderr


def test_missing_library_refuses_to_import(tmp_path):
    r = _import_with(tmp_path / "libnothere.so")
    assert r.returncode != 0 and "ImportError" in r.stderr
