#!/usr/bin/env python3
"""End-to-end tests of the operator programs' command lines (examples/cli, acache;
examples/replay, acache-replay; the secret files of acache-admin).

Runs the real binaries on the memory store with the sample JSON catalog, then on
a private redis-server (started here on a free loopback port, killed by PID).
Checks: options after positional arguments and global flags after the command,
per-command --help and --version (stdout, exit 0, for help2man), exit codes,
--pretty on touch, the HTTP API's bounds for --hours/--limit/--offset, the
confirmation of destructive commands (refusal off a terminal, a real pty, --yes),
permission checks on key and token files, and acache-replay's progress lines.

Standard library only. Usage:
    test_cli.py --cli PATH/acache [--replay PATH/acache-replay] [--admin PATH/acache-admin]
Prints "N passed, N failed" last; exit status 0 only when nothing failed.
"""
import argparse
import base64
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from acache_testlib import RESULTS, Redis, free_port, run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOG = os.path.join(HERE, "..", "..", "examples", "catalog.json")
ALICE = "0b6f4c7e-3d1a-4f2b-9c1e-5a7d2e8f1001"
ALICE_KEY = "4e2d9a10-7c3b-4b8e-a5f1-2c9d8e7f2001"

ARGS = None
TMP = None


# --------------------------------------------------------------- helpers

def env_clean():
    env = dict(os.environ)
    for k in ("ACACHE_STORE", "ACACHE_CATALOG", "ACACHE_ENCRYPTION_KEY", "POSIXLY_CORRECT",
              "REDIS_URL", "REDIS_SENTINEL_HOSTS", "REDIS_SENTINEL_SERVICE_NAME",
              "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"):
        env.pop(k, None)
    return env


def acache(*args, stdin=subprocess.DEVNULL, prog=None, timeout=60, env=None):
    """Run acache; returns (returncode, stdout text, stderr text). `env`: extra
    variables on top of the cleaned environment."""
    full = env_clean()
    full.update(env or {})
    r = subprocess.run([prog or ARGS.cli, *args], stdin=stdin, capture_output=True,
                       env=full, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8",
                                                                              "replace")


def expect(want, *args, **kw):
    rc, out, err = acache(*args, **kw)
    assert rc == want, "acache %s: exit %d, wanted %d\nstdout: %s\nstderr: %s" % (
        " ".join(args), rc, want, out, err)
    return out, err


def secret_file(name, content, mode):
    path = os.path.join(TMP, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


# --------------------------------------------------------------- memory store

def check_version():
    for prog, name in ((ARGS.cli, "acache"), (ARGS.replay, "acache-replay")):
        if not prog:
            continue
        for flag in ("--version", "-V"):
            rc, out, err = acache(flag, prog=prog)
            assert rc == 0 and re.match(r"^%s \d+\.\d+\.\d+ \(libaethercache \d" % name,
                                        out), (name, rc, out, err)
    # --version wins wherever it is, even after a command.
    out, _ = expect(0, "stats", "--version")
    assert out.startswith("acache "), out


def check_help():
    out, err = expect(0, "--help")
    assert out.startswith("Usage: acache") and not err, (out, err)
    for word in ("Commands:", "Exit status:", "--yes", "clear-all", "--store URI"):
        assert word in out, word
    # Per-command help: on stdout, exit 0, the command's own options.
    out, _ = expect(0, "stats", "--help")
    assert out.startswith("Usage: acache [OPTION]... stats\n"), out
    out, _ = expect(0, "touch", "--help")
    assert "--ttl S" in out and "AK FMT MODEL PROVIDER ENDPOINT KEY" in out, out
    assert expect(0, "help", "touch")[0] == out
    assert expect(0, "--help", "touch")[0] == out
    out, _ = expect(0, "ttl-analysis", "-h")
    assert "1..720" in out and "default 168" in out, out
    out, _ = expect(0, "timeline", "--help")
    assert "default 24" in out and "100..50000" in out, out
    for cmd in ("clear-all", "clear-user", "clear-provider", "mapping-clear"):
        out, _ = expect(0, cmd, "--help")
        assert "--yes" in out and "confirmation" in out, (cmd, out)
    # Usage errors: no command, an unknown one, an option another command owns.
    _, err = expect(2)
    assert "Usage: acache" in err, err
    _, err = expect(2, "no-such-command")
    assert "unknown command" in err, err
    expect(2, "help", "no-such-command")
    _, err = expect(2, "stats", "--ttl", "5")
    assert "--ttl" in err and "acache stats --help" in err, err
    _, err = expect(2, "list", "--hours", "5")
    assert "--hours" in err, err
    _, err = expect(2, "get", "a", "b")
    assert "get takes 3 arguments" in err, err


def check_options_anywhere():
    # Options after the positional arguments, between them, and global flags
    # after the command (one process, memory store).
    for args in (["touch", "A", "B", "C", "D", "E", "F", "--ttl", "600"],
                 ["touch", "--ttl", "600", "A", "B", "C", "D", "E", "F"],
                 ["touch", "A", "B", "--ttl=600", "C", "D", "E", "F"],
                 ["--store", "memory://", "touch", "A", "B", "C", "D", "E", "F", "--ttl",
                  "600"],
                 ["touch", "A", "B", "C", "D", "E", "F", "--ttl", "600", "--store",
                  "memory://"]):
        out, _ = expect(0, *args)
        body = json.loads(out)
        assert body["status"] == "ok" and body["result"] == "created", (args, body)
        a = body["affinity"]
        assert (a["affinity_key"], a["api_format"], a["model_name"], a["provider_id"],
                a["endpoint_id"], a["key_id"]) == ("A", "B", "C", "D", "E", "F"), a
        assert abs(a["expire_at"] - a["created_at"] - 600) < 1e-3, a
    out, _ = expect(0, "mask", "sk-1234567890abcdef", "--prefix", "4")
    assert out == "sk-1********cdef\n", repr(out)
    out, _ = expect(0, "mask", "--suffix", "2", "sk-1234567890abcdef", "--prefix=3")
    assert out.startswith("sk-") and out.endswith("ef\n") and "*" in out, repr(out)
    # "--" ends the options: what follows is an argument even if it looks like one.
    out, _ = expect(0, "mask", "--prefix", "2", "--", "--not-an-option-xyz")
    assert out.startswith("--") and "*" in out, out
    # POSIXLY_CORRECT in the caller's environment is removed by env_clean(); the
    # program itself must not ask getopt to stop at the first argument.


def check_touch_pretty():
    out, _ = expect(0, "touch", "A", "B", "C", "D", "E", "F")
    plain = json.loads(out)
    assert out.count("\n") == 1, out
    out, _ = expect(0, "touch", "A", "B", "C", "D", "E", "F", "--pretty")
    pretty = json.loads(out)
    assert out.startswith('{\n  "status": "ok",\n  "result": "created",\n  "affinity": {\n'), out
    assert list(pretty) == ["status", "result", "affinity"], pretty
    assert list(pretty["affinity"]) == list(plain["affinity"]), (pretty, plain)
    # Numbers keep the library's text: the same as `get` prints them on Redis below.
    assert pretty["affinity"]["request_count"] == 1


def check_bounds():
    cat = ["--catalog", CATALOG]
    for cmd in ("ttl-analysis", "hit-analysis", "timeline"):
        for bad in ("0", "721", "-1", "abc", "1.5", "", "99999999999999999999"):
            _, err = expect(2, cmd, "--hours", bad, *cat)
            assert "--hours must be an integer in 1..720" in err, (cmd, bad, err)
            assert ('"%s"' % bad) in err, err
        for good in ("1", "720"):
            out, _ = expect(0, cmd, *cat, "--hours", good)
            assert json.loads(out)["analysis_period_hours"] == int(good), out
        out, _ = expect(0, cmd, *cat)
        want = 24 if cmd == "timeline" else 168
        assert json.loads(out)["analysis_period_hours"] == want, out
    for bad in ("99", "50001", "0"):
        _, err = expect(2, "timeline", "--limit", bad, *cat)
        assert "--limit must be an integer in 100..50000" in err, err
    expect(0, "timeline", "--limit", "100", *cat)
    for bad in ("0", "1001", "-5"):
        _, err = expect(2, "list", "--limit", bad)
        assert "--limit must be an integer in 1..1000" in err, err
    _, err = expect(2, "list", "--offset", "-1")
    assert "--offset" in err, err
    out, _ = expect(0, "list", "--limit", "1000", "--offset", "0")
    assert json.loads(out)["data"]["meta"]["limit"] == 1000, out
    _, err = expect(2, "touch", "A", "B", "C", "D", "E", "F", "--ttl", "0")
    assert "--ttl must be an integer in 1..4294967295" in err, err
    expect(2, "mask", "k", "--prefix", "-1")


def check_exit_codes_memory():
    cat = ["--catalog", CATALOG]
    # A user who exists but has no pins: status not_found, exit 1 (as other
    # not-found answers).
    out, _ = expect(1, "user", "alice", *cat)
    body = json.loads(out)
    assert body["status"] == "not_found" and body["user_info"]["username"] == "alice", body
    _, err = expect(1, "user", "nobody-here", *cat)
    assert "nobody-here" in err, err
    expect(1, "get", "A", "B", "C")  # memory store: nothing there
    _, err = expect(2, "--store", "nonsense://x", "stats")
    assert "store" in err.lower(), err
    # Unreachable Redis: exit 3.
    _, err = expect(3, "--store", "redis://127.0.0.1:%d/0" % free_port(), "stats")
    assert "unavailable" in err or "refused" in err, err
    # A catalog that is missing: exit 3 (catalog unavailable).
    rc, out, err = acache("--catalog", os.path.join(TMP, "missing.json"), "user", "alice")
    assert rc in (2, 3), (rc, out, err)
    # Analyses without a catalog need one: exit 3.
    expect(3, "ttl-analysis")


def check_confirmation_memory():
    # Off a terminal, without --yes: refused with exit 2, nothing done.
    for args in (["clear-all"], ["clear-user", "alice", "--catalog", CATALOG],
                 ["clear-provider", "p"], ["mapping-clear"]):
        _, err = expect(2, *args)
        assert "--yes" in err and "not a terminal" in err, (args, err)
        # Confirmed; the memory store has no model-mapping cache (exit 3).
        expect(3 if args[0] == "mapping-clear" else 0, *args, "--yes")
    expect(0, "--yes", "clear-all")  # --yes before the command too
    # Forms that name one entry do not ask (here: straight to "unsupported").
    expect(3, "mapping-clear", "claude-sonnet-4-5")
    expect(3, "mapping-clear", "--provider", "p", "gm")
    _, err = expect(2, "mapping-clear", "a", "b")
    assert "mapping-clear takes" in err, err
    rc, _, _ = acache("clear-single", "A", "E", "C", "B")
    assert rc in (0, 1), rc


def check_key_file_permissions():
    key = base64.urlsafe_b64encode(bytes(range(32))).decode()
    ok = secret_file("key-0600", key + "\n", 0o600)
    _, err = expect(0, "stats", "--encryption-key-file", ok)
    assert "warning" not in err, err
    loose = secret_file("key-0644", key + "\n", 0o644)
    _, err = expect(0, "stats", "--encryption-key-file", loose)
    assert "warning" in err and "readable by group or other" in err and "0644" in err, err
    assert key not in err, err
    for mode in (0o666, 0o620, 0o602):
        bad = secret_file("key-%o" % mode, key + "\n", mode)
        out, err = expect(2, "stats", "--encryption-key-file", bad)
        assert "refusing" in err and "can write it" in err and not out, (mode, err)
    empty = secret_file("key-empty", "\n", 0o600)
    _, err = expect(2, "stats", "--encryption-key-file", empty)
    assert "is empty" in err, err
    two = secret_file("key-two-lines", key + "\n" + key + "\n", 0o600)
    _, err = expect(2, "stats", "--encryption-key-file", two)
    assert "one line" in err, err
    big = secret_file("key-big", "x" * 5000, 0o600)
    _, err = expect(2, "stats", "--encryption-key-file", big)
    assert "larger than 4096 bytes" in err, err
    _, err = expect(2, "stats", "--encryption-key-file", os.path.join(TMP, "nope"))
    assert "cannot open" in err, err
    # A pipe is not mode-checked (its mode says nothing about who reads it).
    r = subprocess.run([ARGS.cli, "stats", "--encryption-key-file", "/dev/stdin"],
                       input=(key + "\n").encode(), capture_output=True, env=env_clean(),
                       timeout=60)
    assert r.returncode == 0 and b"warning" not in r.stderr, r


def check_admin_token_permissions():
    if not ARGS.admin:
        print("    (no --admin: acache-admin token files not checked)")
        return

    def start(tokfile, keyfile=None):
        cmd = [ARGS.admin, "--listen", "127.0.0.1:0", "--store", "memory://",
               "--token-file", tokfile]
        if keyfile:
            cmd += ["--encryption-key-file", keyfile]
        env = env_clean()
        env.pop("ACACHE_ADMIN_TOKEN", None)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    # 0644: a warning, and the server starts.
    tok = secret_file("token-0644", "a-token\n", 0o644)
    rc, _, err = run_admin_once(start, tok)
    assert "warning" in err and "admin token file" in err and "0644" in err, err
    assert "a-token" not in err, err
    tok = secret_file("token-0600", "a-token\n", 0o600)
    rc, _, err = run_admin_once(start, tok)
    assert "warning" not in err, err
    bad = secret_file("token-0666", "a-token\n", 0o666)
    p = start(bad)
    out, err = p.communicate(timeout=30)
    assert p.returncode != 0 and b"refusing" in err and b"can write it" in err, (
        p.returncode, err)
    keyf = secret_file("admin-key-0640", "a development passphrase\n", 0o640)
    rc, _, err = run_admin_once(start, tok, keyf)
    assert "encryption key file" in err and "0640" in err, err


def run_admin_once(start, tok, keyf=None):
    p = start(tok, keyf)
    line = p.stdout.readline().decode()
    assert line.startswith("listening on"), (line, p.stderr.read())
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    return p.returncode, out.decode(), err.decode()


# --------------------------------------------------------------- replay

def check_replay():
    if not ARGS.replay:
        print("    (no --replay: acache-replay not checked)")
        return
    lines = [json.dumps({"affinity_key": "k%d" % i, "api_format": "claude", "model": "m",
                         "provider_id": "p", "endpoint_id": "e", "key_id": "k"})
             for i in range(30)]
    path = os.path.join(TMP, "traffic.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    # FILE before the options (permutation), --quiet: no progress on stderr.
    rc, out, err = acache(path, "--threads", "2", "--quiet", prog=ARGS.replay)
    assert rc == 0 and out.startswith("replayed 30 records (30 ok") and err == "", (rc, out,
                                                                                  err)
    _, err = expect(2, "--threads", "0", path, prog=ARGS.replay)
    assert "--threads must be an integer in 1..256" in err, err
    expect(2, path, path, prog=ARGS.replay)
    out, _ = expect(0, "--help", prog=ARGS.replay)
    assert out.startswith("Usage: acache-replay") and "--quiet" in out, out
    # A slow feed on stdin: a progress line about every second while reading.
    for quiet in (False, True):
        p = subprocess.Popen([ARGS.replay] + (["-q"] if quiet else []),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env_clean())
        for chunk in range(3):
            p.stdin.write(("\n".join(lines[chunk * 10:chunk * 10 + 10]) + "\n").encode())
            p.stdin.flush()
            time.sleep(1.3)
        out, err = p.communicate(timeout=60)  # closes stdin: end of the feed
        err = err.decode()
        assert p.returncode == 0 and out.startswith(b"replayed 30 records"), (out, err)
        progress = re.findall(r"^acache-replay: read (\d+) lines \(\d+ lines/s\)$", err, re.M)
        if quiet:
            assert err == "", err
        else:
            assert len(progress) >= 2, err
            assert [int(n) for n in progress] == sorted(int(n) for n in progress), err


def check_replay_touch_progress(r):
    """On Redis with one thread the touching phase takes long enough to report."""
    if not ARGS.replay:
        return
    n = 8000
    path = os.path.join(TMP, "traffic-big.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            f.write('{"affinity_key":"r%d","api_format":"claude","model":"m",'
                    '"provider_id":"p","endpoint_id":"e","key_id":"k"}\n' % (i % 2000))
    rc, out, err = acache("--store", r.uri, "--threads", "1", path, prog=ARGS.replay,
                          timeout=300)
    assert rc == 0 and ("replayed %d records (%d ok" % (n, n)) in out, (rc, out, err)
    secs = float(re.search(r" in ([0-9.]+) s:", out).group(1))
    progress = re.findall(r"^acache-replay: (\d+)/%d records \([0-9.]+%%\), \d+ ops/s$" % n,
                          err, re.M)
    print("    replay: %d records on redis in %.2f s, %d progress lines" % (n, secs,
                                                                         len(progress)))
    if secs >= 1.5:
        assert progress, err
    assert all(0 <= int(x) <= n for x in progress), err


# --------------------------------------------------------------- redis store

def check_redis(r):
    st = ["--store", r.uri]
    # touch ... --pretty, then get with options after the arguments.
    # The affinity key is the client's API key id (here alice's), as in Aether.
    out, _ = expect(0, "touch", ALICE_KEY, "claude", "m1", "p1", "e1", "k1", *st, "--ttl",
                    "900", "--pretty")
    assert json.loads(out)["result"] == "created" and "\n  " in out, out
    out, _ = expect(0, "get", ALICE_KEY, "claude", "m1", "--pretty", *st)
    got = json.loads(out)
    assert got["provider_id"] == "p1" and got["key_id"] == "k1" and "\n  " in out, out
    out2, _ = expect(0, "touch", *st, ALICE_KEY, "claude", "m1", "p1", "e1", "k1")
    body = json.loads(out2)
    assert body["result"] == "refreshed" and body["affinity"]["request_count"] == 2, body
    out2, _ = expect(0, "touch", ALICE_KEY, "claude", "m1", "p2", "e1", "k1", *st)
    assert json.loads(out2)["result"] == "switched", out2
    # get's text and touch's embedded affinity render numbers the same way.
    out, _ = expect(0, *st, "get", ALICE_KEY, "claude", "m1")
    assert out.strip() in out2, (out, out2)
    expect(1, "get", ALICE_KEY, "claude", "nope", *st)
    # user with pins: exit 0; another user with none: exit 1.
    out, _ = expect(0, "user", "alice", *st, "--catalog", CATALOG)
    assert json.loads(out)["status"] == "ok", out
    out, _ = expect(1, "--catalog", CATALOG, *st, "user", "bob")
    assert json.loads(out)["status"] == "not_found", out
    out, _ = expect(0, "list", *st, "--limit", "5", "--catalog", CATALOG)
    assert json.loads(out)["data"]["meta"]["total"] == 1, out

    # Destructive commands: refused off a terminal, nothing deleted.
    _, err = expect(2, "clear-all", *st)
    assert "--yes" in err, err
    expect(2, "clear-user", "alice", *st, "--catalog", CATALOG)
    expect(2, "clear-provider", "p2", *st)
    expect(0, "get", ALICE_KEY, "claude", "m1", *st)
    # On a terminal: "n" keeps everything, "y" deletes.
    rc, err = on_pty([ARGS.cli, "clear-all", *st], b"n\n")
    assert rc == 2 and "[y/N]" in err and "not confirmed" in err, (rc, err)
    expect(0, "get", ALICE_KEY, "claude", "m1", *st)
    rc, err = on_pty([ARGS.cli, "clear-provider", "p2", *st], b"y\n")
    assert rc == 0 and "[y/N]" in err, (rc, err)
    expect(1, "get", ALICE_KEY, "claude", "m1", *st)
    # --yes skips the question, on a terminal too.
    expect(0, "touch", "AK2", "claude", "m1", "p1", "e1", "k", *st)
    rc, err = on_pty([ARGS.cli, "clear-all", "--yes", *st], b"")
    assert rc == 0 and "[y/N]" not in err, (rc, err)
    expect(1, "get", "AK2", "claude", "m1", *st)
    expect(0, "touch", "AK3", "claude", "m1", "p1", "e1", "k", *st)
    out, _ = expect(0, *st, "clear-all", "--yes")
    assert json.loads(out)["count"] == 1, out
    # mapping-clear without a name is the broad form; with a name it does not ask.
    r.cli("SET", "global_model:resolve:claude-x", '{"id": "g"}')
    expect(2, "mapping-clear", *st)
    assert r.cli("EXISTS", "global_model:resolve:claude-x").strip() == "1"
    expect(0, "mapping-clear", "claude-x", *st)
    assert r.cli("EXISTS", "global_model:resolve:claude-x").strip() == "0"


def check_clear_key_endpoint(r):
    """clear-key / clear-endpoint: the confirmation rules of clear-provider, and
    exactly the pins to that provider key / endpoint go."""
    st = ["--store", r.uri]
    expect(0, *st, "clear-all", "--yes")
    for cmd in ("clear-key", "clear-endpoint"):
        out, _ = expect(0, cmd, "--help")
        assert "--yes" in out and "confirmation" in out, (cmd, out)
        _, err = expect(2, cmd, "--yes", *st)
        assert "takes 1 argument" in err, err
    expect(0, "touch", "A1", "claude", "m", "p1", "e1", "k1", *st)
    expect(0, "touch", "A2", "claude", "m", "p1", "e1", "k2", *st)
    expect(0, "touch", "A3", "claude", "m", "p2", "e2", "k1", *st)
    expect(0, "touch", "A4", "claude", "m", "p2", "e2", "k3", *st)
    # Off a terminal without --yes: refused, nothing deleted.
    _, err = expect(2, "clear-key", "k1", *st)
    assert "--yes" in err and "not a terminal" in err, err
    _, err = expect(2, "clear-endpoint", "e2", *st)
    assert "--yes" in err and "not a terminal" in err, err
    expect(0, "get", "A1", "claude", "m", *st)
    # On a terminal: "n" keeps, "y" deletes.
    rc, err = on_pty([ARGS.cli, "clear-key", "k1", *st], b"n\n")
    assert rc == 2 and "[y/N]" in err and "provider API key" in err, (rc, err)
    expect(0, "get", "A3", "claude", "m", *st)
    out, _ = expect(0, "clear-key", "k1", "--yes", *st)
    body = json.loads(out)
    assert body["key_id"] == "k1" and body["count"] == 2, body
    expect(1, "get", "A1", "claude", "m", *st)
    expect(1, "get", "A3", "claude", "m", *st)
    expect(0, "get", "A2", "claude", "m", *st)
    rc, err = on_pty([ARGS.cli, "clear-endpoint", "e2", *st], b"y\n")
    assert rc == 0 and "[y/N]" in err, (rc, err)
    expect(1, "get", "A4", "claude", "m", *st)
    expect(0, "get", "A2", "claude", "m", *st)
    out, _ = expect(0, "--yes", "clear-endpoint", "nope", *st)
    assert json.loads(out) == {"status": "ok", "message":
                               "Cleared 0 cache affinities of the endpoint",
                               "endpoint_id": "nope", "count": 0}, out
    expect(0, *st, "clear-all", "--yes")


def on_pty(cmd, answer):
    """Run cmd with stdin on a pseudo-terminal; answer the prompt; return (rc, stderr)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env_clean())
    os.close(slave)
    err = b""
    try:
        deadline = time.time() + 30
        if answer:
            while b"[y/N]" not in err and time.time() < deadline and p.poll() is None:
                ready, _, _ = select.select([p.stderr], [], [], 0.5)
                if ready:
                    chunk = os.read(p.stderr.fileno(), 4096)
                    if not chunk:
                        break
                    err += chunk
            os.write(master, answer)
        out, rest = p.communicate(timeout=30)
        err += rest
    finally:
        os.close(master)
    return p.returncode, err.decode("utf-8", "replace")


# --------------------------------------------------------------- runner

def check_store_env():
    """Aether's variables when no --store is given (examples/common/store_env.c):
    --store > ACACHE_STORE > REDIS_SENTINEL_HOSTS > REDIS_URL (+ REDIS_PASSWORD)
    > memory://, with the password percent-encoded into the URI."""
    pw = "p@ss:w/rd%?&#"
    r = Redis(TMP, password=pw)
    sent = None
    try:
        url = "redis://127.0.0.1:%d/0" % r.port
        dead = "redis://127.0.0.1:%d/0" % free_port()

        def storage(env, *extra):
            out, _ = expect(0, "stats", *extra, env=env)
            return json.loads(out)["data"]["affinity_stats"]["storage_type"]

        # REDIS_URL without a password takes REDIS_PASSWORD (encoded).
        assert storage({"REDIS_URL": url, "REDIS_PASSWORD": pw}) == "redis"
        _, err = expect(3, "stats", env={"REDIS_URL": url})
        assert "authentication" in err.lower() or "NOAUTH" in err, err
        assert pw not in err, err
        # A password in the URL wins over REDIS_PASSWORD.
        _, err = expect(3, "stats", env={"REDIS_URL": "redis://:wrong@127.0.0.1:%d/0" % r.port,
                                         "REDIS_PASSWORD": pw})
        assert "authentication failed" in err, err
        # ACACHE_STORE beats REDIS_URL; --store beats both.
        assert storage({"ACACHE_STORE": "memory://", "REDIS_URL": dead}) == "memory"
        assert storage({"ACACHE_STORE": dead, "REDIS_URL": dead}, "--store", "memory://") == \
            "memory"
        assert storage({}) == "memory"
        # REDIS_SENTINEL_HOSTS beats REDIS_URL: a real sentinel names the primary.
        sport = free_port()
        sdir = tempfile.mkdtemp(dir=TMP)
        conf = os.path.join(sdir, "sentinel.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor aether 127.0.0.1 %d 1\n"
                    "sentinel auth-pass aether %s\n" % (sport, sdir, r.port, pw))
        sent = subprocess.Popen(["redis-server", conf, "--sentinel"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            rc = subprocess.run(["redis-cli", "-p", str(sport), "PING"],
                                capture_output=True, text=True)
            if rc.stdout.strip() == "PONG":
                break
            time.sleep(0.05)
        env = {"REDIS_SENTINEL_HOSTS": " 127.0.0.1:%d, 127.0.0.1:%d" % (free_port(), sport),
               "REDIS_SENTINEL_SERVICE_NAME": "aether", "REDIS_PASSWORD": pw,
               "REDIS_URL": dead}
        expect(0, "touch", "k", "openai", "m", "p", "e", "key", env=env)
        assert r.cli("EXISTS", "cache_affinity:k:openai:m").strip() == "1"
        _, err = expect(3, "stats", env=dict(env, REDIS_SENTINEL_SERVICE_NAME="other"))
        assert "no primary" in err and pw not in err, err
        _, err = expect(2, "stats", env={"REDIS_SENTINEL_HOSTS": "bad/host"})
        assert "REDIS_SENTINEL_HOSTS" in err, err
        # acache-admin reads the same variables.
        if ARGS.admin:
            rc = subprocess.run([ARGS.admin, "--listen", "127.0.0.1:0", "--insecure-no-auth"], env=dict(
                env_clean(), REDIS_SENTINEL_HOSTS="bad/host"), capture_output=True,
                text=True, timeout=30)
            assert rc.returncode == 2 and "REDIS_SENTINEL_HOSTS" in rc.stderr, rc.stderr
    finally:
        if sent and sent.poll() is None:
            sent.kill()  # ours, by PID
            sent.wait()
        r.stop()


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--replay")
    ap.add_argument("--admin")
    ARGS = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="acache-cli-")
    try:
        run("version", check_version)
        run("help", check_help)
        run("options_anywhere", check_options_anywhere)
        run("touch_pretty", check_touch_pretty)
        run("bounds", check_bounds)
        run("exit_codes", check_exit_codes_memory)
        run("confirmation", check_confirmation_memory)
        run("key_file_permissions", check_key_file_permissions)
        run("admin_token_permissions", check_admin_token_permissions)
        run("replay", check_replay)
        if not shutil.which("redis-server"):
            print("SKIP redis: redis-server not installed")
        else:
            run("store_env", check_store_env)
            r = Redis(TMP)
            try:
                run("redis", check_redis, r)
                run("clear_key_endpoint", check_clear_key_endpoint, r)
                run("replay_touch_progress", check_replay_touch_progress, r)
            finally:
                r.stop()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("%d passed, %d failed" % (RESULTS["passed"], RESULTS["failed"]))
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
