#!/usr/bin/env python3
"""End-to-end tests of the example admin server (examples/admin, acache-admin).

Runs the real server binary on a free loopback port, first on the memory
store, then on a private redis-server (started here, killed by PID) with a
JSON catalog, and checks every route of docs/http-api.md: status codes,
bodies, percent-decoded path segments, auth, limits, a short load run, the
Prometheus text (with promtool when installed), HEAD, /healthz and /readyz
(with the redis-server paused, stopped and restarted), both access log
formats, CORS, and TLS with a certificate openssl makes at test time (when
openssl is installed).

Standard library only. Usage:
    test_http.py --server PATH/acache-admin [--replay PATH/acache-replay]
Prints "N passed, N failed" last; exit status 0 only when nothing failed.
"""
import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import acache_testlib  # noqa: E402
from acache_testlib import RESULTS, free_port, run  # noqa: E402

MON = "/api/admin/monitoring/cache"
USAGE = "/api/admin/usage/cache-affinity"
TOKEN = "test-token-\u00e9-not-secret"  # non-ASCII on purpose: compared as bytes

ARGS = None
TMP = None


# --------------------------------------------------------------- helpers

def q(s):
    """Percent-encode one path segment ('/' included)."""
    return urllib.parse.quote(s, safe="")


def err(detail):
    """An error body: FastAPI's `detail` and Aether's `error` (docs/http-api.md "Errors")."""
    return {"detail": detail, "error": {"type": "http_error", "message": detail}}


def check_err(data):
    """Any error body has both shapes with the same message; returns the detail."""
    body = json.loads(data)
    assert isinstance(body.get("detail"), str) and body == err(body["detail"]), body
    assert data.startswith(b'{"detail": '), data  # detail first, as docs/http-api.md shows
    return body["detail"]


def asan_env(extra=""):
    env = dict(os.environ)
    # A small quarantine keeps RSS meaningful under AddressSanitizer.
    opts = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = ":".join(x for x in (opts, "quarantine_size_mb=4", extra) if x)
    return env


class Server:
    """One acache-admin process on 127.0.0.1:<free port>."""

    def __init__(self, store, catalog=None, token=TOKEN, extra=(), env=None, tls=None):
        """tls: an ssl.SSLContext trusting the server's certificate (HTTPS)."""
        self.token = token
        self.tls = tls
        tokfile = os.path.join(TMP, "token-%d" % time.monotonic_ns())
        with open(tokfile, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        self.errlog = os.path.join(TMP, "server-%d.log" % time.monotonic_ns())
        cmd = [ARGS.server, "--store", store, "--listen", "127.0.0.1:0",
               "--token-file", tokfile, *extra]
        if catalog:
            cmd += ["--catalog", catalog]
        self.err = open(self.errlog, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err,
                                     env=env or asan_env())
        line = self.proc.stdout.readline().decode()
        scheme = "https" if tls else "http"
        if not line.startswith("listening on %s://127.0.0.1:" % scheme):
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("server did not start: %r\n%s" % (line, self.log()))
        self.port = int(line.rsplit(":", 1)[1])

    def log(self):
        if not self.err.closed:
            self.err.flush()
        with open(self.errlog, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def request(self, method, path, token=True, headers=None, body=None, timeout=30,
                source=None):
        h = dict(headers or {})
        if token is True:
            h["Authorization"] = "Bearer " + self.token
        elif token:
            h["Authorization"] = token
        src = (source, 0) if source else None
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               source_address=src, context=self.tls)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                              source_address=src)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in h.items():
                conn.putheader(k, v.encode("utf-8") if isinstance(v, str) else v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, expect=200, **kw):
        st, hdr, data = self.request(method, path, **kw)
        assert st == expect, "%s %s: %d != %d: %r" % (method, path, st, expect, data[:300])
        assert hdr.get("content-type") == "application/json; charset=utf-8", hdr
        if st >= 400:
            check_err(data)
        return json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.err.close()
        return self.proc.returncode


class Redis(acache_testlib.Redis):
    """The shared private server, with bulk loading and EXISTS."""

    def pipe(self, commands):
        """Send many commands through redis-cli --pipe (RESP generated here)."""
        out = bytearray()
        for cmd in commands:
            out += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a.encode() if isinstance(a, str) else a
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        r = subprocess.run(["redis-cli", "-p", str(self.port), "--pipe"], input=bytes(out),
                           capture_output=True, check=True)
        assert b"errors: 0" in r.stdout, r.stdout

    def exists(self, key):
        return int(self.cli("EXISTS", key).strip()) == 1


def aether_pin(ak, fmt, model, prov, ep, key, now, ttl=3600, count=1):
    """A pin exactly as Aether's set_affinity writes it (json.dumps separators)."""
    value = json.dumps({"provider_id": prov, "endpoint_id": ep, "key_id": key,
                        "api_format": fmt, "model_name": model, "created_at": now - 10,
                        "expire_at": now + ttl, "request_count": count})
    return ["SET", "cache_affinity:%s:%s:%s" % (ak, fmt, model), value, "EX", str(ttl)]


# --------------------------------------------------------------- checks shared by both stores

def check_auth(s):
    path = MON + "/stats"
    for tok in (None, "Bearer wrong", "Bearer " + s.token + "x", "Bearer " + s.token[:-1],
                "Basic " + s.token, "Bearer", "Bearer "):
        st, hdr, data = s.request("GET", path, token=tok)
        assert st == 401, (tok, st)
        assert json.loads(data) == err("Not authenticated"), data
        assert hdr.get("www-authenticate") == "Bearer"
    # 401 comes before routing and before the body.
    assert s.request("GET", "/nope", token=None)[0] == 401
    assert s.request("DELETE", MON, token=None)[0] == 401
    assert s.request("GET", path, token="bearer " + s.token)[0] == 200


def check_routing(s):
    assert s.json("GET", MON + "/nope", 404) == err("Not Found")
    assert s.json("GET", "/", 404) == err("Not Found")
    assert s.json("GET", MON + "x/stats", 404) == err("Not Found")
    assert s.json("GET", MON + "/stats/extra", 404) == err("Not Found")
    assert s.json("GET", MON + "/affinity/", 404) == err("Not Found")  # empty param
    st, hdr, data = s.request("GET", MON)
    assert st == 405 and hdr.get("allow") == "DELETE", (st, hdr)
    assert json.loads(data) == err("Method Not Allowed")
    st, hdr, data = s.request("POST", MON + "/stats", body=b"{}")
    assert st == 405 and hdr.get("allow") == "GET, HEAD", hdr  # HEAD wherever GET is
    assert json.loads(data) == err("Method Not Allowed")
    st, hdr, _ = s.request("GET", MON + "/affinity/a/b/c/d")
    assert st == 405 and hdr.get("allow") == "DELETE"
    st, hdr, _ = s.request("DELETE", MON + "/affinity/someone")
    assert st == 405 and hdr.get("allow") == "GET, HEAD"
    st, hdr, _ = s.request("PUT", USAGE + "/ttl-analysis")
    assert st == 405 and hdr.get("allow") == "GET, HEAD"
    st, hdr, _ = s.request("HEAD", MON)  # DELETE-only: HEAD is not implied
    assert st == 405 and hdr.get("allow") == "DELETE", (st, hdr)
    # Bad escapes in a path segment: 422, never a truncated identifier.
    for bad in ("%zz", "%4", "abc%", "%00", "a%0"):
        body = s.json("DELETE", MON + "/providers/" + bad, 422)
        assert "percent" in body["detail"], body


def check_limits(s):
    # Declared body over 64 KiB: 413 before reading it.
    st, _, data = s.request("POST", MON + "/stats", body=b"x" * (70 * 1024))
    assert st == 413, st
    assert "larger than" in check_err(data)
    # Chunked body over 64 KiB (no length announced): refused mid-upload.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    try:
        conn.request("POST", MON + "/stats", body=iter([b"x" * 8192] * 10), encode_chunked=True,
                     headers={"Authorization": ("Bearer " + s.token).encode()})
        assert conn.getresponse().status == 413
    except (ConnectionError, http.client.HTTPException, OSError):
        pass  # connection closed: refused
    finally:
        conn.close()
    # A small body is read and ignored.
    assert s.request("DELETE", MON + "/providers/p-none", body=b"{}")[0] == 200
    # Over-long URL and header: refused by the connection memory limit.
    for kind in ("url", "header"):
        try:
            if kind == "url":
                st = s.request("GET", MON + "/affinity/" + "a" * 100_000)[0]
            else:
                st = s.request("GET", MON + "/stats", headers={"X-Big": "b" * 100_000})[0]
            assert st in (400, 413, 414, 431), (kind, st)
        except (ConnectionError, http.client.HTTPException, OSError):
            pass  # closed before answering: also a refusal
    assert s.request("GET", MON + "/stats")[0] == 200  # still serving


def check_params(s):
    bad = [
        (MON + "/affinities?limit=0", "limit"), (MON + "/affinities?limit=1001", "limit"),
        (MON + "/affinities?limit=abc", "limit"), (MON + "/affinities?limit=", "limit"),
        (MON + "/affinities?limit=1.5", "limit"), (MON + "/affinities?offset=-1", "offset"),
        (MON + "/affinities?offset=99999999999999999999999", "offset"),
        (USAGE + "/ttl-analysis?hours=0", "hours"), (USAGE + "/ttl-analysis?hours=721", "hours"),
        (USAGE + "/ttl-analysis?hours=x", "hours"), (USAGE + "/hit-analysis?hours=-5", "hours"),
        (USAGE + "/hit-analysis?hours=%201", "hours"),
        (USAGE + "/interval-timeline?limit=99", "limit"),
        (USAGE + "/interval-timeline?limit=50001", "limit"),
        (USAGE + "/interval-timeline?hours=721", "hours"),
        (USAGE + "/interval-timeline?include_user_info=maybe", "include_user_info"),
        (USAGE + "/interval-timeline?include_user_info=", "include_user_info"),
    ]
    for path, name in bad:
        body = s.json("GET", path, 422)
        assert name in body["detail"], (path, body)
    # Edge values parse.
    s.json("GET", MON + "/affinities?limit=1000&offset=0&keyword=")
    s.json("GET", MON + "/affinities?limit=%2B1")  # "+1"


def check_memory_specifics(s):
    stats = s.json("GET", MON + "/stats")
    assert stats["status"] == "ok"
    assert stats["data"]["scheduler"] == "cache_aware"
    assert stats["data"]["affinity_stats"]["storage_type"] == "memory"
    cfg = s.json("GET", MON + "/config")
    assert cfg["status"] == "ok" and cfg["data"]["cache_ttl_seconds"] == 300
    lst = s.json("GET", MON + "/affinities")
    assert lst == {"status": "ok", "data": {"items": [], "meta": {"total": 0, "limit": 100,
                   "offset": 0, "count": 0}, "matched_user_id": None}}, lst
    # No catalog: identifiers resolve to nothing.
    assert "bob" in s.json("GET", MON + "/affinity/bob", 404)["detail"]
    s.json("DELETE", MON + "/users/" + q("bob smith"), 404)
    s.json("DELETE", MON + "/affinity/k/e/m/claude", 404)
    body = s.json("DELETE", MON + "/providers/" + q("p/1"))
    assert body["status"] == "ok" and body["provider_id"] == "p/1" and body["count"] == 0, body
    body = s.json("DELETE", MON)
    assert body["status"] == "ok" and body["count"] == 0
    # Model mapping needs Redis: stats say so, clears are 503.
    mm = s.json("GET", MON + "/model-mapping/stats")
    assert mm["status"] == "ok" and mm["data"]["available"] is False
    for path in ("/model-mapping", "/model-mapping/" + q("gpt 4/o"),
                 "/model-mapping/provider/p1/g1", "/model-mapping/stats"):
        assert "detail" in s.json("DELETE", MON + path, 503)
    # Analyses need a catalog: valid parameters get past validation, then 503.
    for path in ("/ttl-analysis", "/hit-analysis?hours=1&user_id=&api_key_id=",
                 "/interval-timeline?include_user_info=YES", "/interval-timeline?include_user_info=off"):
        s.json("GET", USAGE + path, 503)


def check_metrics(s, expect_total=None):
    st, hdr, data = s.request("GET", MON + "/metrics")
    assert st == 200
    assert hdr["content-type"] == "text/plain; version=0.0.4; charset=utf-8", hdr
    text = data.decode()
    assert text.endswith("\n")
    assert '\ncache_scheduler_info{scheduler="cache_aware"} 1\n' in text
    assert "# TYPE cache_affinity_total gauge" in text
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=data, capture_output=True)
        # Exit 3 = parsed fine, only naming-lint remarks. Two names are fixed by
        # Aether's API (its dashboards use them): a gauge ending in _total
        # and one ending in _count. Anything else, or a parse error, fails.
        allowed = {b'cache_affinity_total non-counter metrics should not have "_total" suffix',
                   b"cache_scheduler_last_candidate_count non-histogram and non-summary "
                   b'metrics should not have "_count" suffix'}
        remarks = set((r.stdout + r.stderr).splitlines()) - {b""}
        assert r.returncode == 0 or (r.returncode == 3 and remarks <= allowed), \
            (r.returncode, r.stdout + r.stderr)
    return text


# TIME CLIENT METHOD PATH STATUS BYTES DURATION (docs/http-api.md "Access log").
LOG_TEXT = re.compile(r"^(\S+) (\S+) ([A-Z]+) (\S+) (\d{3}) (\d+) (\d+)us$")


def rfc3339(t):
    """Parse the log's UTC time (RFC 3339, millisecond precision, 'Z')."""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t), t
    return datetime.datetime.fromisoformat(t[:-1] + "+00:00")


def check_access_log(s):
    t0 = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    s.request("GET", MON + "/config")
    s.request("GET", MON + "/stats", token=None)  # 401: logged as well
    time.sleep(0.1)
    parsed = [LOG_TEXT.match(l) for l in s.log().splitlines()]
    parsed = [m for m in parsed if m]
    ok = [m for m in parsed if m.group(3) == "GET" and m.group(4) == MON + "/config"]
    assert ok, s.log()[-2000:]
    when, client, _, _, status, nbytes, us = ok[-1].groups()
    t = rfc3339(when)
    assert t0 <= t <= datetime.datetime.now(datetime.timezone.utc), (t0, t)
    assert client == "127.0.0.1" and status == "200" and int(nbytes) > 0 and int(us) >= 0
    assert any(m.group(4) == MON + "/stats" and m.group(5) == "401" for m in parsed)
    assert s.token not in s.log()


def check_access_log_json():
    """--log-format json: every access line is one JSON object."""
    s = Server("memory://", extra=["--log-format", "json"])
    try:
        st, _, data = s.request("GET", MON + "/config", source="127.0.0.9")
        assert st == 200
        s.request("HEAD", MON + "/stats")
        s.request("GET", MON + "/%E6%A8%A1")  # logged as sent, still encoded
        time.sleep(0.1)
        objs = [json.loads(l) for l in s.log().splitlines() if l.startswith("{")]
        assert len(objs) == 3, s.log()
        want = {"time", "client", "method", "path", "status", "bytes", "duration_us"}
        for o in objs:
            assert set(o) == want, o
            rfc3339(o["time"])
            assert all(isinstance(o[k], int) for k in ("status", "bytes", "duration_us")), o
        assert objs[0]["client"] == "127.0.0.9" and objs[0]["method"] == "GET", objs[0]
        assert objs[0]["path"] == MON + "/config" and objs[0]["status"] == 200
        assert objs[0]["bytes"] == len(data)
        assert objs[1]["method"] == "HEAD" and objs[1]["bytes"] == 0, objs[1]  # no body sent
        assert objs[2]["status"] == 404 and objs[2]["path"] == MON + "/%E6%A8%A1", objs[2]
        assert not LOG_TEXT.search(s.log())
    finally:
        assert s.stop() == 0, s.log()[-3000:]
    r = subprocess.run([ARGS.server, "--insecure-no-auth", "--log-format", "xml"],
                       capture_output=True, env=asan_env(), timeout=30)
    assert r.returncode == 2 and b"--log-format" in r.stderr, r


# --------------------------------------------------------------- HEAD, health, CORS, TLS

GET_ROUTES = [MON + "/stats", MON + "/config", MON + "/metrics", MON + "/affinities",
              MON + "/affinity/nobody", MON + "/model-mapping/stats",
              USAGE + "/ttl-analysis", USAGE + "/hit-analysis", USAGE + "/interval-timeline",
              MON + "/affinities?limit=0"]


def check_head(s):
    """HEAD on every GET route: GET's status and headers, no body."""
    for path in GET_ROUTES + ["/healthz", "/readyz"]:
        gst, ghdr, gdata = s.request("GET", path)
        hst, hhdr, hdata = s.request("HEAD", path)
        assert hst == gst and hdata == b"", (path, gst, hst, hdata[:100])
        assert hhdr.get("content-type") == ghdr.get("content-type"), (path, hhdr)
        # Content-Length: the GET body's, where the body is deterministic.
        if path in (MON + "/config", "/healthz", MON + "/affinity/nobody"):
            assert int(hhdr["content-length"]) == len(gdata), (path, hhdr, len(gdata))
    assert s.request("HEAD", MON + "/stats", token=None)[0] == 401


def check_health(s, store_type, catalog_type):
    """Unauthenticated /healthz and /readyz."""
    for tok in (None, "Bearer wrong"):
        st, hdr, data = s.request("GET", "/healthz", token=tok)
        assert st == 200 and json.loads(data) == {"status": "ok"}, (st, data)
        assert hdr["content-type"] == "application/json; charset=utf-8"
        st, _, data = s.request("GET", "/readyz", token=tok)
        assert st == 200, (st, data)
        assert json.loads(data) == {
            "status": "ready", "store": {"type": store_type, "state": "ok"},
            "catalog": {"type": catalog_type, "state": "ok" if catalog_type else "none"}}, data
    st, hdr, data = s.request("POST", "/readyz", token=None, body=b"")
    assert st == 405 and hdr.get("allow") == "GET, HEAD", (st, hdr)
    check_err(data)
    # Only the exact paths are public.
    assert s.request("GET", "/healthz/x", token=None)[0] == 401
    assert s.request("GET", MON + "/healthz", token=None)[0] == 401


def ready(s, timeout=10):
    t0 = time.monotonic()
    st, _, data = s.request("GET", "/readyz", token=None, timeout=timeout)
    return st, json.loads(data), time.monotonic() - t0


def check_readyz_redis():
    """/readyz follows a redis-server the test pauses (SIGSTOP: timeout),
    stops (refused: error) and restarts; /healthz stays 200 throughout."""
    r = Redis(TMP)
    s = None
    try:
        s = Server(r.uri, catalog=write_catalog(time.time()),
                   extra=["--ready-timeout", "300"])
        st, body, _ = ready(s)
        assert st == 200 and body["store"] == {"type": "redis", "state": "ok"}, body
        assert body["catalog"] == {"type": "json", "state": "ok"}, body
        r.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(2):  # the second joins the probe still blocked on Redis
                st, body, dt = ready(s)
                assert st == 503 and body["status"] == "not_ready", (st, body)
                assert body["store"]["state"] == "timeout", body
                assert dt < 1.5, dt  # --ready-timeout, not the 2 s command timeout
            assert s.request("GET", "/healthz", token=None)[0] == 200
        finally:
            r.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while ready(s)[0] != 200:
            assert time.monotonic() < deadline, "not ready again after SIGCONT"
            time.sleep(0.2)
        port = r.port
        r.stop()
        deadline = time.monotonic() + 10
        while True:
            st, body, _ = ready(s)
            if st == 503 and body["store"]["state"] == "error":
                break
            assert time.monotonic() < deadline, (st, body)
            time.sleep(0.2)
        assert body["catalog"]["state"] == "ok", body  # named per component
        assert s.request("GET", "/healthz", token=None)[0] == 200
        assert "readyz: store" in s.log(), s.log()[-2000:]  # the cause is logged, not served
        r = Redis(TMP, port=port)
        deadline = time.monotonic() + 10
        while ready(s)[0] != 200:
            assert time.monotonic() < deadline, "not ready after the restart"
            time.sleep(0.2)
    finally:
        if s:
            assert s.stop() == 0, s.log()[-3000:]
        r.stop()


def check_cors():
    ui, dev = "https://ui.example.com", "http://localhost:3000"
    s = Server("memory://", extra=["--cors-origin", ui, "--cors-origin", dev])
    try:
        for origin in (ui, dev):
            st, hdr, data = s.request("OPTIONS", MON + "/affinities", token=None, headers={
                "Origin": origin, "Access-Control-Request-Method": "DELETE",
                "Access-Control-Request-Headers": "authorization"})
            assert st == 204 and data == b"", (st, data)
            assert hdr["access-control-allow-origin"] == origin, hdr
            assert hdr["vary"] == "Origin", hdr
            methods = {m.strip() for m in hdr["access-control-allow-methods"].split(",")}
            assert {"GET", "HEAD", "DELETE", "OPTIONS"} <= methods, hdr
            assert "authorization" in hdr["access-control-allow-headers"].lower(), hdr
            assert int(hdr["access-control-max-age"]) > 0, hdr
        # Normal responses, errors included, carry the header for an allowed origin.
        st, hdr, _ = s.request("GET", MON + "/config", headers={"Origin": ui})
        assert st == 200 and hdr["access-control-allow-origin"] == ui, hdr
        st, hdr, _ = s.request("GET", MON + "/config", token=None, headers={"Origin": ui})
        assert st == 401 and hdr["access-control-allow-origin"] == ui, hdr
        # Another origin: no grant, and the preflight is not answered.
        for other in ("https://evil.example.com", ui + "/", ui.upper()):
            st, hdr, _ = s.request("OPTIONS", MON + "/config", token=None,
                                   headers={"Origin": other,
                                            "Access-Control-Request-Method": "GET"})
            assert st == 401 and "access-control-allow-origin" not in hdr, (other, st, hdr)
            st, hdr, _ = s.request("GET", MON + "/config", headers={"Origin": other})
            assert st == 200 and "access-control-allow-origin" not in hdr, hdr
    finally:
        assert s.stop() == 0, s.log()[-3000:]
    s = Server("memory://", extra=["--cors-origin", "*"])
    try:
        st, hdr, _ = s.request("OPTIONS", MON + "/stats", token=None,
                               headers={"Origin": "https://anything.example"})
        assert st == 204 and hdr["access-control-allow-origin"] == "*", hdr
        st, hdr, _ = s.request("GET", MON + "/config", headers={"Origin": "http://x.test"})
        assert hdr["access-control-allow-origin"] == "*" and "vary" not in hdr, hdr
    finally:
        assert s.stop() == 0, s.log()[-3000:]
    for bad in ("ui.example.com", "https://ui.example.com/", "https://", "https://a b"):
        r = subprocess.run([ARGS.server, "--insecure-no-auth", "--cors-origin", bad],
                           capture_output=True, env=asan_env(), timeout=30)
        assert r.returncode == 2 and b"--cors-origin" in r.stderr, (bad, r)


def check_no_cors(s):
    """Not configured: no CORS header anywhere, OPTIONS is an ordinary request."""
    h = {"Origin": "https://ui.example.com", "Access-Control-Request-Method": "GET"}
    st, hdr, _ = s.request("OPTIONS", MON + "/stats", token=None, headers=h)
    assert st == 401 and not [k for k in hdr if k.startswith("access-control")], hdr
    st, hdr, _ = s.request("OPTIONS", MON + "/stats", headers=h)
    assert st == 405, st
    st, hdr, _ = s.request("GET", MON + "/stats", headers=h)
    assert st == 200 and not [k for k in hdr if k.startswith("access-control")], hdr


def make_cert(name):
    """A self-signed certificate for 127.0.0.1 made by openssl now."""
    cert, key = os.path.join(TMP, name + ".crt"), os.path.join(TMP, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=acache-admin test", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def check_tls():
    cert, key = make_cert("tls")
    ctx = ssl.create_default_context(cafile=cert)  # verifies chain and 127.0.0.1
    s = Server("memory://", extra=["--tls-cert", cert, "--tls-key", key], tls=ctx)
    try:
        stats = s.json("GET", MON + "/stats")
        assert stats["status"] == "ok"
        assert s.request("GET", "/healthz", token=None)[0] == 200
        assert s.request("GET", MON + "/stats", token=None)[0] == 401
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3"), tls.version()
        # Plain HTTP on the TLS port gets no HTTP answer.
        try:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
            conn.request("GET", "/healthz")
            st = conn.getresponse().status
            assert st != 200, st
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        # A client that does not trust the certificate is refused.
        try:
            plain = ssl.create_default_context()
            with socket.create_connection(("127.0.0.1", s.port), timeout=5) as raw:
                plain.wrap_socket(raw, server_hostname="127.0.0.1").close()
            raise AssertionError("an untrusted certificate was accepted")
        except ssl.SSLCertVerificationError:
            pass
        assert "without TLS" not in s.log()
    finally:
        assert s.stop() == 0, s.log()[-3000:]
    env = asan_env()
    with open(os.path.join(TMP, "notpem"), "w") as f:
        f.write("not a certificate\n")
    for args, rc, what in ((["--tls-cert", cert], 2, b"--tls-key"),
                           (["--tls-key", key], 2, b"--tls-cert"),
                           (["--tls-cert", cert, "--tls-key", os.path.join(TMP, "none")], 1,
                            b"TLS key"),
                           (["--tls-cert", os.path.join(TMP, "notpem"), "--tls-key", key], 1,
                            b"not a PEM file"),
                           (["--tls-cert", key, "--tls-key", cert], 1, b"TLS")):
        r = subprocess.run([ARGS.server, "--insecure-no-auth", "--listen", "127.0.0.1:0",
                            *args], capture_output=True, env=env, timeout=30)
        assert r.returncode == rc and what in r.stderr, (args, r)


def start_raw(args):
    """acache-admin with `args`; returns (process, first stdout line)."""
    env = asan_env()
    env["ACACHE_ADMIN_TOKEN"] = "t"
    p = subprocess.Popen([ARGS.server, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    return p, p.stdout.readline().decode()


def stop_raw(p):
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    return err.decode("utf-8", "replace")


def check_exposure_warning():
    """Outside loopback without TLS: a warning on stderr. The wildcard bind
    lasts a moment and is only ever connected to over 127.0.0.1."""
    cert, key = make_cert("warn")
    for args, warn in ((["--listen", "127.0.0.1:0"], False),
                       (["--listen", "0.0.0.0:0"], True),
                       (["--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key], False)):
        p, line = start_raw(args)
        assert line.startswith("listening on http"), line
        err = stop_raw(p)
        assert ("outside loopback, without TLS" in err) == warn, (args, err)


def load_run(s, paths, total=2000, threads=4):
    """`total` requests over `threads` keep-alive connections; returns failures."""
    failures = []
    per = total // threads

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        try:
            for n in range(per):
                path = paths[(i + n) % len(paths)]
                try:
                    conn.request("GET", path, headers={
                        "Authorization": ("Bearer " + s.token).encode("utf-8")})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 200:
                        failures.append((path, r.status))
                except (OSError, http.client.HTTPException) as e:
                    failures.append((path, repr(e)))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        finally:
            conn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return failures


def check_load(s, paths):
    load_run(s, paths, total=1000)  # warm-up: pools, allocator arenas
    before = s.rss_kb()
    t0 = time.monotonic()
    failures = load_run(s, paths, total=2000)
    dt = time.monotonic() - t0
    after = s.rss_kb()
    assert not failures, failures[:5]
    assert after - before < 8 * 1024, "RSS grew %d kB (%d -> %d)" % (after - before, before, after)
    print("    load: 2000 requests in %.2fs, RSS %d -> %d kB" % (dt, before, after))


def check_shutdown(s):
    rc = s.stop()
    assert rc == 0, "exit %s\n%s" % (rc, s.log()[-3000:])  # LeakSanitizer fails the exit
    assert "shutting down" in s.log()


# --------------------------------------------------------------- slow clients, shutdown

def slow_sockets(port, n, source):
    """n non-blocking connections from `source`; connects may stay pending."""
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        c.bind((source, 0))
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(c)
    return socks


def dribble(socks, chunk):
    """Send `chunk` on every socket that takes it; returns how many did."""
    ok = 0
    for c in socks:
        try:
            c.send(chunk)
            ok += 1
        except OSError:
            pass
    return ok


def check_slowloris():
    """Item 8: 260 slowloris connections from one address (more than the 256
    connection limit) must not starve a legitimate client on another address.
    Default options: the per-IP limit is what protects it."""
    s = Server("memory://")
    socks = []
    try:
        socks = slow_sockets(s.port, 260, "127.0.0.3")
        head = b"GET " + MON.encode() + b"/stats HTTP/1.1\r\nHost: x\r\nX-Slow: "
        deadline = time.monotonic() + 12
        times = []
        for i in range(6):
            dribble(socks, head if i == 0 else b"a")
            t0 = time.monotonic()
            st, _, data = s.request("GET", MON + "/stats", timeout=3, source="127.0.0.2")
            times.append(time.monotonic() - t0)
            assert st == 200 and json.loads(data)["status"] == "ok", (st, data[:200])
            time.sleep(0.5)
        assert time.monotonic() < deadline
        print("    slowloris: legitimate requests took max %.3fs" % max(times))
    finally:
        for c in socks:
            c.close()
        assert s.stop() == 0, s.log()[-3000:]


def wait_closed(c, limit):
    """Seconds until the server closes socket `c` (EOF or reset), or None."""
    t0 = time.monotonic()
    c.settimeout(0.1)
    while time.monotonic() - t0 < limit:
        try:
            if c.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
        try:
            c.send(b"a")  # keep dribbling: inactivity alone must not be what closes it
        except OSError:
            return time.monotonic() - t0
        time.sleep(0.2)
    return None


def check_head_timeout():
    """Item 8: a connection whose request head does not complete within
    --head-timeout is closed although it keeps sending; --per-ip-limit
    refuses connections past the limit; a keep-alive client is not hurt."""
    s = Server("memory://", extra=["--head-timeout", "1", "--per-ip-limit", "3"])
    socks = []
    try:
        # Keep-alive: two requests on one connection, 0.3 s apart.
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5,
                                          source_address=("127.0.0.6", 0))
        for _ in range(2):
            conn.request("GET", MON + "/config",
                         headers={"Authorization": ("Bearer " + s.token).encode()})
            r = conn.getresponse()
            assert r.status == 200, r.status
            r.read()
            time.sleep(0.3)
        conn.close()
        # Over the per-IP limit: closed at once.
        socks = slow_sockets(s.port, 3, "127.0.0.4")
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                         source_address=("127.0.0.4", 0))
        socks.append(extra)
        dt = wait_closed(extra, 1.0)
        assert dt is not None and dt < 0.9, dt
        # A slow head, one byte every 0.2 s: closed after about 1 s.
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=5,
                                        source_address=("127.0.0.5", 0))
        socks.append(slow)
        slow.send(b"GET " + MON.encode() + b"/stats HTTP/1.1\r\n")
        dt = wait_closed(slow, 5.0)
        assert dt is not None and 0.7 < dt < 3.0, dt
        assert "no complete request head" in s.log(), s.log()[-2000:]
        assert s.request("GET", MON + "/config", source="127.0.0.7")[0] == 200
    finally:
        for c in socks:
            c.close()
        assert s.stop() == 0, s.log()[-3000:]


def paused_request(s, r, path):
    """Start GET `path` while redis-server is stopped; returns (thread, result)."""
    result = {}

    def go():
        try:
            result["resp"] = s.request("GET", path, timeout=15)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            result["error"] = repr(e)

    r.proc.send_signal(signal.SIGSTOP)
    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.5)  # the handler is now blocked on Redis
    return t, result


def check_drain(r):
    """Item 9: SIGTERM lets an in-flight request finish (default grace), then
    the process exits 0. Redis is paused so the request is really in flight."""
    s = Server(r.uri)
    try:
        t, result = paused_request(s, r, MON + "/stats")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert s.proc.poll() is None, "exited with a request in flight"
        r.proc.send_signal(signal.SIGCONT)
        t.join(15)
        assert "error" not in result, result
        st, hdr, data = result["resp"]
        assert st == 200 and json.loads(data)["status"] == "ok", (st, data[:300])
        assert hdr.get("connection", "").lower() == "close", hdr
        rc = s.proc.wait(timeout=10)
        assert rc == 0 and time.monotonic() - t0 < 10, (rc, s.log()[-3000:])
        assert "1 request(s) in flight" in s.log(), s.log()[-2000:]
    finally:
        r.proc.send_signal(signal.SIGCONT)
        s.stop()


def check_drain_bounded(r):
    """Item 9: the drain is bounded by --shutdown-grace even when the request
    does not finish in it (the library's command timeout ends it later)."""
    s = Server(r.uri, extra=["--shutdown-grace", "1"])
    try:
        t, result = paused_request(s, r, MON + "/stats")
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(timeout=10)
        dt = time.monotonic() - t0
        assert rc == 0 and 0.9 < dt < 4.0, (rc, dt, s.log()[-3000:])
        assert "still in flight" in s.log(), s.log()[-2000:]
        t.join(15)
    finally:
        r.proc.send_signal(signal.SIGCONT)
        s.stop()


# --------------------------------------------------------------- startup options

def check_startup_options():
    # No token and no --insecure-no-auth: refuse to start.
    env = asan_env()
    env.pop("ACACHE_ADMIN_TOKEN", None)
    r = subprocess.run([ARGS.server, "--listen", "127.0.0.1:0"], capture_output=True,
                       env=env, timeout=30)
    assert r.returncode == 2 and b"token" in r.stderr, r  # a usage error, like the others
    r = subprocess.run([ARGS.server, "--listen", "nonsense"], capture_output=True, env=env,
                       timeout=30)
    assert r.returncode == 2, r
    for bad in (["--per-ip-limit", "x"], ["--head-timeout", "0"], ["--shutdown-grace", "-1"],
                ["--max-connections", "0"], ["--idle-timeout", ""]):
        r = subprocess.run([ARGS.server, "--insecure-no-auth", *bad], capture_output=True,
                           env=env, timeout=30)
        assert r.returncode == 2 and bad[0].encode() in r.stderr, (bad, r)
    r = subprocess.run([ARGS.server, "--version"], capture_output=True, env=env, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"acache-admin 0."), r
    r = subprocess.run([ARGS.server, "--help"], capture_output=True, env=env, timeout=30)
    assert r.returncode == 0 and b"--shutdown-grace" in r.stdout, r
    # Token from the environment, --port-file, and the encryption key file.
    portfile = os.path.join(TMP, "port")
    keyfile = os.path.join(TMP, "enc-key")
    with open(keyfile, "w") as f:
        f.write("a development passphrase\n")
    env["ACACHE_ADMIN_TOKEN"] = "env-token"
    p = subprocess.Popen([ARGS.server, "--listen", "127.0.0.1:0", "--port-file", portfile,
                          "--encryption-key-file", keyfile, "--store", "memory://"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = p.stdout.readline().decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with open(portfile) as f:
            assert int(f.read()) == port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", MON + "/stats", headers={"Authorization": "Bearer env-token"})
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    # --insecure-no-auth serves without a token.
    p = subprocess.Popen([ARGS.server, "--listen", "127.0.0.1:0", "--insecure-no-auth"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=asan_env())
    try:
        port = int(p.stdout.readline().decode().rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", MON + "/config")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
    assert p.returncode == 0


# --------------------------------------------------------------- Redis + catalog

def write_catalog(now):
    """users/api_keys plus the usage rows of a worked example (times from `now`)."""
    users = [{"id": "u-" + n, "username": n, "email": n + "@example.com"}
             for n in ("alice", "bob", "carol", "dave", "erin", "admin")]
    keys = [{"id": i, "user_id": u, "name": nm, "key_encrypted": None, "is_standalone": sa}
            for i, u, nm, sa in [("k-alice", "u-alice", "alice key", False),
                                 ("k-alice2", "u-alice", "alice key 2", False),
                                 ("k-bob", "u-bob", "bob key", False),
                                 ("k-carol", "u-carol", "carol key", False),
                                 ("k-dave", "u-dave", "dave key", False),
                                 ("k-erin", "u-erin", "erin key", False),
                                 ("k-sa", "u-admin", "standalone", True)]]
    rows = [
        ("r01", "u-alice", "k-alice", 100.0, "claude-sonnet-4", "completed", 100, 1000, 0, 0.0003, 0.0),
        ("r02", "u-alice", "k-alice", 98.0, "claude-sonnet-4", "completed", 100, 2000, 0, 0.0006, 0.0),
        ("r03", "u-alice", "k-alice2", 95.0, "claude-haiku-4", "completed", 100, 0, 500, 0.0, 0.0019),
        ("r04", "u-alice", "k-alice", 90.0, "claude-sonnet-4", "completed", 100, 3000, 0, 0.0009, 0.0),
        ("r05", "u-alice", "k-alice2", 89.5, "claude-haiku-4", "completed", 100, 0, 0, 0.0, 0.0),
        ("r06", "u-alice", "k-alice", 85.5, "claude-sonnet-4", "completed", 100, 500, 0, 0.00015, 0.0),
        ("r07", "u-alice", "k-alice", 85.4, "claude-sonnet-4", "failed", 100, 500, 0, 0.00015, 0.0),
        ("r08", "u-alice", "k-alice", 85.3, "claude-sonnet-4", "pending", 100, 500, 0, 0.00015, 0.0),
        ("r09", "u-bob", "k-bob", 300.0, "gpt-4o", "completed", 1000, 0, 0, 0.0, 0.0),
        ("r10", "u-bob", "k-bob", 285.0, "gpt-4o", "completed", 1000, 0, 0, 0.0, 0.0),
        ("r11", "u-bob", "k-bob", 265.0, "gpt-4o", "completed", 1000, 0, 0, 0.0, 0.0),
        ("r12", "u-bob", "k-bob", 240.0, "gpt-4o", "completed", 1000, 0, 0, 0.0, 0.0),
        ("r13", "u-bob", "k-bob", 230.0, "gpt-4o", "completed", 1000, 0, 0, 0.0, 0.0),
        ("r14", "u-carol", "k-carol", 600.0, "claude-sonnet-4", "completed", 10, 100, 0, 0.00003, 0.0),
        ("r15", "u-carol", "k-carol", 510.0, "claude-sonnet-4", "completed", 10, 100, 0, 0.00003, 0.0),
        ("r16", "u-carol", "k-carol", 360.0, "claude-sonnet-4", "completed", 10, 100, 0, 0.00003, 0.0),
        ("r17", "u-carol", "k-carol", 315.0, "claude-sonnet-4", "completed", 10, 100, 0, 0.00003, 0.0),
        ("r18", "u-dave", "k-dave", 50.0, "gpt-4o", "completed", 5, 0, 0, 0.0, 0.0),
        ("r19", "u-dave", "k-dave", 40.0, "gpt-4o", "completed", 5, 0, 0, 0.0, 0.0),
        ("r20", "u-dave", "k-dave", 20000.0, "gpt-4o", "completed", 5, 0, 0, 0.0, 0.0),
        ("r21", "u-erin", "k-erin", 30.0, "gpt-4o", "completed", 1, 0, 0, 0.0, 0.0),
        ("r22", "u-erin", "k-erin", 30.0, "gpt-4o", "completed", 1, 0, 0, 0.0, 0.0),
        ("r23", "u-erin", "k-erin", 30.0, "gpt-4o", "completed", 1, 0, 0, 0.0, 0.0),
        ("r24", "u-admin", "k-sa", 70.0, "claude-sonnet-4", "completed", 50, 0, 0, 0.0, 0.0),
        ("r25", "u-admin", "k-sa", 60.0, "claude-sonnet-4", "completed", 50, 0, 0, 0.0, 0.0),
        ("r26", "u-admin", "k-sa", 45.0, "claude-sonnet-4", "completed", 50, 0, 0, 0.0, 0.0),
        ("r27", None, None, 20.0, "gpt-4o", "completed", 7, 0, 0, 0.0, 0.0),
    ]
    usage = [{"id": r[0], "user_id": r[1], "api_key_id": r[2], "created_at": now - r[3] * 60,
              "model": r[4], "status": r[5], "input_tokens": r[6],
              "cache_read_input_tokens": r[7], "cache_creation_input_tokens": r[8],
              "cache_read_cost_usd": r[9], "cache_creation_cost_usd": r[10]} for r in rows]
    path = os.path.join(TMP, "catalog.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"users": users, "api_keys": keys, "providers": [], "provider_endpoints": [],
                   "provider_api_keys": [], "global_models": [], "models": [],
                   "usage": usage}, f)
    return "json://" + path


# Models chosen to exercise decoding: a space, an encoded '/', a colon, unicode.
SPACE, SLASH, COLON, UNI = "model with space", "org/model", "qwen2.5:7b", "模型-ü"


def load_pins(r, now):
    cmds = [
        aether_pin("k-alice", "claude", SPACE, "prov-a", "ep-1", "pk-1", now, 3600),
        aether_pin("k-alice", "openai", SLASH, "prov-a", "ep-1", "pk-1", now, 3500),
        aether_pin("k-alice2", "claude", COLON, "prov-b", "ep-2", "pk-2", now, 3400),
        aether_pin("k-bob", "gemini", UNI, "prov-b", "ep-3", "pk-3", now, 3300),
        aether_pin("k-bob", "claude", "m-1", "prov-c", "ep-4", "pk-4", now, 3200),
        aether_pin("k-carol", "claude", "m-1", "prov-c", "ep-4", "pk-4", now, 3100),
    ]
    cmds += [aether_pin("k-load-%02d" % i, "claude", "m-2", "prov-d", "ep-5", "pk-5", now, 600)
             for i in range(20)]
    r.pipe(cmds)
    n = len(cmds)
    if ARGS.replay and os.path.exists(ARGS.replay):
        lines = "".join(json.dumps({"affinity_key": "k-replay-%d" % i, "api_format": "claude",
                                    "model": "m-3", "provider_id": "prov-e",
                                    "endpoint_id": "ep-6", "key_id": "pk-6", "ttl": 300}) + "\n"
                        for i in range(3))
        subprocess.run([ARGS.replay, "--store", r.uri], input=lines.encode(), check=True,
                       capture_output=True, env=asan_env(), timeout=60)
        n += 3
    # The model-mapping cache as the gateway fills it.
    r.pipe([
        ["SET", "global_model:resolve:" + SPACE, "NOT_FOUND", "EX", "300"],
        ["SET", "global_model:name:" + SPACE, json.dumps({"id": "g1", "name": SPACE}), "EX", "300"],
        ["SET", "global_model:resolve:*", "NOT_FOUND", "EX", "300"],
        ["SET", "model:provider_global:p1:g1", json.dumps({"id": "m1", "provider_id": "p1",
                                                           "global_model_id": "g1"}), "EX", "300"],
        ["SET", "model:provider_global:hits:p1:g1", "7", "EX", "300"],
        ["SET", "model:id:m9", json.dumps({"id": "m9"}), "EX", "300"],
    ])
    return n


def check_fleet(s):
    """Issue 11 item 1: the pins acache-replay (another process, closed by
    now) created show in this server's /stats and /metrics as fleet totals."""
    if not (ARGS.replay and os.path.exists(ARGS.replay)):
        print("SKIP redis.fleet: no acache-replay")
        return
    aff = s.json("GET", MON + "/stats")["data"]["affinity_stats"]
    assert aff["total_affinities"] == 3 and aff["cache_misses"] == 0, aff
    fl = aff["fleet"]
    assert fl["scope"] == "fleet" and fl["active_affinities_age_s"] <= 5, fl
    time.sleep(1.3)  # this server's first flush makes it a live instance
    fl = s.json("GET", MON + "/stats")["data"]["affinity_stats"]["fleet"]
    assert fl["instances"] >= 1 and fl["per_instance"][0]["version"], fl
    text = check_metrics(s)  # promtool included
    assert "\nacache_affinity_created_total 3\n" in text, text
    assert "\ncache_affinity_total 3.0\n" in text, text
    assert "# TYPE acache_affinity_hits_total counter\n" in text
    assert '\nacache_affinity_switches_total{kind="key"} 0\n' in text
    assert "# TYPE acache_instances gauge\n" in text


def check_redis_routes(s, r, npins):
    stats = s.json("GET", MON + "/stats")["data"]["affinity_stats"]
    assert stats["storage_type"] == "redis" and stats["active_affinities"] == npins, stats

    lst = s.json("GET", MON + "/affinities")["data"]
    assert lst["meta"] == {"total": npins, "limit": 100, "offset": 0, "count": npins}, lst["meta"]
    exp = [i["expire_at"] for i in lst["items"]]
    assert exp == sorted(exp, reverse=True)
    page = s.json("GET", MON + "/affinities?limit=2&offset=1")["data"]
    assert page["meta"] == {"total": npins, "limit": 2, "offset": 1, "count": 2}
    assert page["items"] == lst["items"][1:3]
    models = {i["model_name"] for i in lst["items"]}
    assert {SPACE, SLASH, COLON, UNI} <= models, models
    # Keyword (case-insensitive raw-field match, and catalog user resolution).
    kw = s.json("GET", MON + "/affinities?keyword=PROV-B")["data"]
    assert kw["meta"]["total"] == 2 and kw["matched_user_id"] is None, kw
    kw = s.json("GET", MON + "/affinities?keyword=" + q(" alice "))["data"]
    assert kw["matched_user_id"] == "u-alice" and kw["meta"]["total"] == 3, kw
    assert {i["username"] for i in kw["items"]} == {"alice"}

    # One user's affinities, by username, email and API key id.
    for ident in ("alice", "alice@example.com", "k-alice2", "u-alice"):
        ua = s.json("GET", MON + "/affinity/" + q(ident))
        assert ua["status"] == "ok" and ua["total_endpoints"] == 3, ua
        assert ua["user_info"]["user_id"] == "u-alice"
    assert s.json("GET", MON + "/affinity/dave")["status"] == "not_found"
    assert "nobody" in s.json("GET", MON + "/affinity/nobody", 404)["detail"]

    # Single clears with decoded segments; the key in Redis is the decoded name.
    for ak, fmt, model, ep in (("k-alice", "claude", SPACE, "ep-1"),
                               ("k-alice", "openai", SLASH, "ep-1"),
                               ("k-alice2", "claude", COLON, "ep-2"),
                               ("k-bob", "gemini", UNI, "ep-3")):
        key = "cache_affinity:%s:%s:%s" % (ak, fmt, model)
        assert r.exists(key)
        path = MON + "/affinity/%s/%s/%s/%s" % (q(ak), q(ep), q(model), q(fmt))
        s.json("DELETE", MON + "/affinity/%s/wrong-ep/%s/%s" % (q(ak), q(model), q(fmt)), 404)
        assert r.exists(key)
        body = s.json("DELETE", path)
        assert body["status"] == "ok" and body["affinity_key"] == ak, body
        assert body["endpoint_id"] == ep and body["model_id"] == model, body
        assert not r.exists(key)
        s.json("DELETE", path, 404)
    npins -= 4

    # By API key id (user_info names the key), then by user.
    body = s.json("DELETE", MON + "/users/k-bob")
    assert body["status"] == "ok" and body["count"] == 1, body
    assert body["user_info"]["api_key_id"] == "k-bob" and body["user_info"]["user_id"] == "u-bob"
    body = s.json("DELETE", MON + "/users/carol")
    assert body["count"] == 1 and body["user_info"]["username"] == "carol", body
    s.json("DELETE", MON + "/users/" + q("no such user"), 404)
    npins -= 2

    body = s.json("DELETE", MON + "/providers/prov-d")
    assert body == {**body, "status": "ok", "provider_id": "prov-d", "count": 20}, body
    npins -= 20
    assert s.json("GET", MON + "/stats")["data"]["affinity_stats"]["active_affinities"] == npins

    # Model mapping (Redis only): stats, literal names, provider pair, clear all.
    mm = s.json("GET", MON + "/model-mapping/stats")
    assert mm["status"] == "ok" and mm["data"]["available"] is True, mm
    assert mm["data"]["breakdown"]["global_model_resolve"] == 2, mm
    body = s.json("DELETE", MON + "/model-mapping/" + q("*"))
    assert body["model_name"] == "*" and body["deleted_keys"] == ["global_model:resolve:*"], body
    assert r.exists("global_model:resolve:" + SPACE)  # '*' was a literal
    body = s.json("DELETE", MON + "/model-mapping/" + q(SPACE))
    assert body["model_name"] == SPACE and sorted(body["deleted_keys"]) == sorted(
        ["global_model:resolve:" + SPACE, "global_model:name:" + SPACE]), body
    body = s.json("DELETE", MON + "/model-mapping/provider/p1/g1")
    assert body["provider_id"] == "p1" and body["global_model_id"] == "g1", body
    assert len(body["deleted_keys"]) == 2, body
    body = s.json("DELETE", MON + "/model-mapping")
    assert body["status"] == "ok" and body["deleted_count"] == 1, body  # model:id:m9

    text = check_metrics(s)
    assert "cache_affinity_invalidations" in text

    body = s.json("DELETE", MON)
    assert body["status"] == "ok" and body["count"] == npins, (body, npins)
    assert s.json("GET", MON + "/affinities")["data"]["meta"]["total"] == 0


def check_key_endpoint_routes(s, r):
    """The extensions DELETE /keys/{key_id} and /endpoints/{endpoint_id}: exactly
    the pins naming that provider key / endpoint go (brute force over the values)."""
    s.json("DELETE", MON)
    now = time.time()
    pins = [("x%04d" % i, "p%d" % (i % 3), "e%d" % (i % 7), "k%d" % (i % 11))
            for i in range(600)]
    pins.append(("odd", "p0", "e/1 x", "k/1 x"))  # decoded path segments
    r.pipe([aether_pin(ak, "claude", "m", p, e, k, now) for ak, p, e, k in pins])

    def left():
        return {ak for ak, _, _, _ in pins
                if r.exists("cache_affinity:%s:claude:m" % ak)}

    alive = {ak for ak, _, _, _ in pins}
    for route, idx, ident in (("keys", 3, "k1"), ("endpoints", 2, "e1"),
                              ("keys", 3, "k/1 x"), ("endpoints", 2, "e/1 x")):
        want = {p[0] for p in pins if p[idx] == ident and p[0] in alive}
        field = "key_id" if route == "keys" else "endpoint_id"
        body = s.json("DELETE", MON + "/%s/%s" % (route, q(ident)))
        assert body == {"status": "ok", "message": body["message"], field: ident,
                        "count": len(want)}, (body, len(want))
        alive -= want
        assert left() == alive, route
    body = s.json("DELETE", MON + "/keys/nope")
    assert body["count"] == 0, body
    assert s.request("GET", MON + "/keys/k1")[0] == 405
    lc = s.json("GET", MON + "/stats")["data"]["affinity_stats"]["lifecycle"]
    assert set(lc) == {"report_successes", "report_transient_failures",
                       "report_terminal_failures", "report_not_pinned",
                       "pins_dropped_transient", "pins_dropped_terminal"}, lc
    s.json("DELETE", MON)


def check_analysis_routes(s):
    ttl = s.json("GET", USAGE + "/ttl-analysis?hours=168")
    assert ttl["analysis_period_hours"] == 168 and ttl["total_users_analyzed"] == 5, ttl
    assert [u["group_id"] for u in ttl["users"]] == ["u-alice", "u-bob", "u-carol",
                                                     "u-admin", "u-erin"], ttl
    assert ttl["ttl_distribution"] == {"5min": 2, "15min": 1, "30min": 1, "60min": 1}
    one = s.json("GET", USAGE + "/ttl-analysis?api_key_id=k-alice")
    assert [u["group_id"] for u in one["users"]] == ["k-alice"]
    assert s.json("GET", USAGE + "/ttl-analysis")["analysis_period_hours"] == 168  # default

    hit = s.json("GET", USAGE + "/hit-analysis?hours=168")
    assert hit["total_requests"] == 24 and hit["requests_with_cache_hit"] == 8, hit
    hit = s.json("GET", USAGE + "/hit-analysis?user_id=u-alice&api_key_id=k-alice")
    assert hit["total_requests"] == 4, hit

    tl = s.json("GET", USAGE + "/interval-timeline")
    assert tl["analysis_period_hours"] == 24 and tl["total_points"] == 16, tl
    assert "users" not in tl and tl["models"] == ["claude-haiku-4", "claude-sonnet-4", "gpt-4o"]
    tl = s.json("GET", USAGE + "/interval-timeline?hours=24&include_user_info=True&limit=10000")
    assert list(tl["users"]) == ["u-carol", "u-bob", "u-alice", "u-admin", "u-dave", "u-erin"]
    tl = s.json("GET", USAGE + "/interval-timeline?user_id=u-bob&include_user_info=1&limit=100")
    assert tl["total_points"] == 4 and "users" not in tl, tl


# --------------------------------------------------------------- runner

def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--replay")
    ARGS = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="acache-http-")
    try:
        run("startup_options", check_startup_options)

        s = Server("memory://")
        try:
            for name, fn in (("memory.auth", check_auth), ("memory.routing", check_routing),
                             ("memory.limits", check_limits), ("memory.params", check_params),
                             ("memory.routes", check_memory_specifics),
                             ("memory.metrics", check_metrics),
                             ("memory.access_log", check_access_log),
                             ("memory.head", check_head), ("memory.no_cors", check_no_cors)):
                run(name, fn, s)
            run("memory.health", check_health, s, "memory", None)
            run("memory.load", check_load, s, [MON + "/stats", MON + "/config",
                                                MON + "/metrics", MON + "/affinities"])
        finally:
            run("memory.shutdown", check_shutdown, s)
        run("slowloris", check_slowloris)
        run("head_timeout", check_head_timeout)
        run("access_log_json", check_access_log_json)
        run("cors", check_cors)
        if shutil.which("openssl"):
            run("tls", check_tls)
            run("exposure_warning", check_exposure_warning)
        else:
            print("SKIP tls: openssl not installed")

        if not shutil.which("redis-server"):
            print("SKIP redis: redis-server not installed")
        else:
            r = Redis(TMP)
            try:
                now = time.time()
                catalog = write_catalog(now)
                s = Server(r.uri, catalog=catalog)
                try:
                    npins = load_pins(r, now)
                    run("redis.auth", check_auth, s)
                    run("redis.health", check_health, s, "redis", "json")
                    run("redis.fleet", check_fleet, s)
                    run("redis.head", check_head, s)
                    run("redis.routes", check_redis_routes, s, r, npins)
                    run("redis.key_endpoint_routes", check_key_endpoint_routes, s, r)
                    run("redis.analysis", check_analysis_routes, s)
                    r.pipe([aether_pin("k-l%03d" % i, "claude", "m", "p", "e", "k", time.time())
                            for i in range(20)])
                    run("redis.load", check_load, s, [MON + "/stats",
                                                       MON + "/affinities?limit=100",
                                                       MON + "/affinity/alice"])
                finally:
                    run("redis.shutdown", check_shutdown, s)
                run("redis.drain", check_drain, r)
                run("redis.drain_bounded", check_drain_bounded, r)
            finally:
                r.stop()
            run("redis.readyz", check_readyz_redis)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (RESULTS["passed"], RESULTS["failed"]))
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
