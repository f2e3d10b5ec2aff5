"""The package README's example runs as is, and the package is what it says."""
import contextlib
import io
import os
import re

import pytest

import aether_cache as ac

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_has_an_example():
    assert python_blocks(), "no ```python block in bindings/python/README.md"


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_readme_example_runs_as_is(store, request, monkeypatch):
    if store == "redis":
        srv = request.getfixturevalue("redis_server")
        srv.cli("FLUSHALL")
        monkeypatch.setenv("ACACHE_STORE", srv.uri)
    else:
        monkeypatch.delenv("ACACHE_STORE", raising=False)
    for block in python_blocks():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, README, "exec"), {"__name__": "__readme__"})
        lines = out.getvalue().splitlines()
        assert lines[0] == "prov endpoint prov-key 1"
        assert lines[1].startswith("no pin: NotFoundError(status=-2, message=")
        assert lines[2].startswith("ReportResult(action=<ReportAction.KEPT: 4>, failures=1)")
        assert lines[3:] == ["1", "1"]


def test_reprs(cache):
    assert repr(cache) == "<aether_cache.Cache store=%r>" % cache.store_type
    cache.touch(affinity_key="ak", api_format="claude", model_name="m", provider_id="p",
                endpoint_id="e", key_id="k")
    a = cache.get("ak", "claude", "m")
    assert repr(a).startswith("Affinity(affinity_key='ak', api_format='claude'")
    r = cache.report(affinity_key="ak", api_format="claude", model_name="m", provider_id="p",
                     endpoint_id="e", key_id="k", outcome=ac.Outcome.SUCCESS)
    assert repr(r) == "ReportResult(action=<ReportAction.REFRESHED: 2>, failures=0)"
    assert r == (ac.ReportAction.REFRESHED, 0) and r.action is ac.ReportAction.REFRESHED
    with pytest.raises(ac.NotFoundError) as ei:
        cache.get("nobody", "claude", "m")
    assert repr(ei.value).startswith("NotFoundError(status=-2, message='")
    c = ac.Cache()
    c.close()
    assert repr(c) == "<aether_cache.Cache closed>"


def test_touch_and_report_are_keyword_only(cache):
    with pytest.raises(TypeError):
        cache.touch("ak", "claude", "m", "p", "e", "k")  # type: ignore[misc]
    with pytest.raises(TypeError):
        cache.report("ak", "claude", "m", "p", "e", "k",  # type: ignore[misc]
                      outcome=ac.Outcome.SUCCESS)
    with pytest.raises(TypeError):
        cache.invalidate_single("ak", "claude", "m", "k")  # type: ignore[misc]


def test_public_methods_have_docstrings_and_hints():
    import inspect
    missing = []
    for name, fn in inspect.getmembers(ac.Cache):
        if name.startswith("_") and name not in ("__init__", "__enter__", "__exit__"):
            continue
        target = fn.fget if isinstance(fn, property) else fn
        if not callable(target):
            continue
        if not inspect.getdoc(target):
            missing.append(name + ": no docstring")
        if "return" not in getattr(target, "__annotations__", {}):
            missing.append(name + ": no return annotation")
    for name in ("library_version", "strerror", "http_status", "library_path"):
        fn = getattr(ac, name)
        if not inspect.getdoc(fn) or "return" not in fn.__annotations__:
            missing.append(name)
    assert not missing, missing


def test_typed_marker_and_licence():
    pkg = os.path.dirname(ac.__file__)
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    try:
        from importlib import metadata
        meta = metadata.metadata("aether-cache")
    except Exception:  # noqa: BLE001 - not installed: the source tree
        if os.environ.get("ACACHE_TEST_INSTALLED"):
            raise
        pytest.skip("aether-cache is not installed (source-tree run)")
    assert meta["License"] == "MIT"
    assert "License :: OSI Approved :: MIT License" in meta.get_all("Classifier")


def test_installed_package_is_the_one_tested():
    """In ctest python-installed: the package comes from the venv, not the
    source tree, and the library from the build (through LD_LIBRARY_PATH)."""
    if not os.environ.get("ACACHE_TEST_INSTALLED"):
        pytest.skip("source-tree run")
    src = os.path.realpath(os.path.join(os.path.dirname(README), "aether_cache"))
    assert os.path.realpath(os.path.dirname(ac.__file__)) != src
    assert "site-packages" in ac.__file__
    want = os.environ.get("ACACHE_EXPECT_LIBRARY")
    assert "ACACHE_LIBRARY" not in os.environ
    assert want and os.path.samefile(ac.library_path(), want)


def test_mypy_strict(tmp_path):
    """The package's hints hold under mypy --strict, and the README example
    type-checks against them (Debian: python3-mypy; skipped without it)."""
    import subprocess
    import sys
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy not installed (apt-get install python3-mypy)")
    example = tmp_path / "readme_example.py"
    example.write_text("\n".join(python_blocks()))
    env = dict(os.environ)
    files = [str(example)]
    if not os.environ.get("ACACHE_TEST_INSTALLED"):
        pkg = os.path.dirname(os.path.abspath(ac.__file__))
        env["MYPYPATH"] = os.path.dirname(pkg)
        files.append(pkg)
    # Installed: mypy uses the package in site-packages only because of
    # py.typed (PEP 561), so this also checks that the marker was installed.
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache")] + files,
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
