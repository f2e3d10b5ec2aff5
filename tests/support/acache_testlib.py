"""Shared by the script tests (tests/cli, tests/http): a private redis-server,
a free loopback port, and the check runner that reports every failure and
goes on. Python 3 standard library only."""
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback

RESULTS = {"passed": 0, "failed": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of our own on 127.0.0.1 (no persistence, a temporary
    directory under `parent`), killed by its PID in stop()."""

    def __init__(self, parent, port=None, password=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(dir=parent)
        self.password = password
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir] +
            (["--requirepass", password] if password else []),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def uri(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def cli(self, *args):
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        return subprocess.run(["redis-cli", "-p", str(self.port), *auth, *args], check=True,
                              capture_output=True, text=True).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()  # our own server, by PID
        self.proc.wait()


def run(name, fn, *a):
    t0 = time.monotonic()
    try:
        fn(*a)
    except Exception:  # noqa: BLE001 - report every failure and go on
        RESULTS["failed"] += 1
        print("FAIL %s (%.2fs)" % (name, time.monotonic() - t0))
        traceback.print_exc(file=sys.stdout)
    else:
        RESULTS["passed"] += 1
        print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
    sys.stdout.flush()
