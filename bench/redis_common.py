"""What the redis benchmarks share: a private server on loopback, its
statistics, and the machine's context.  Imported by bench/redis-*.py."""
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args],
                          capture_output=True, text=True, check=True).stdout


def commandstats(port):
    """Every command so far: {name: (calls, usec)}."""
    out = {}
    for line in cli(port, "info", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[8:].split(":", 1)
            f = dict(kv.split("=") for kv in rest.strip().split(","))
            out[name] = (int(f["calls"]), int(f["usec"]))
    return out


def commands(port):
    """Calls of every command so far: {name: calls}."""
    return {k: v[0] for k, v in commandstats(port).items()}


def server_cpu(port):
    """The server's CPU time so far (user + system), in seconds."""
    f = {}
    for line in cli(port, "info", "cpu").splitlines():
        if ":" in line:
            k, v = line.strip().split(":", 1)
            f[k] = v
    return float(f["used_cpu_user"]) + float(f["used_cpu_sys"])


@contextlib.contextmanager
def private_server():
    """A redis-server on a free loopback port, no persistence; its port.
    Stopped and its directory removed on the way out."""
    port = free_port()
    d = tempfile.mkdtemp()
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
         "--save", "", "--appendonly", "no", "--dir", d],
        stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                if "PONG" in cli(port, "ping"):
                    break
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(d, ignore_errors=True)


def context(tally=None):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu_model": cpu, "online_cpus": os.cpu_count(),
        "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "loadavg_before": os.getloadavg()[0],
        "redis_server": sh("redis-server", "--version"),
        "hiredis": sh("dpkg-query", "-W", "-f", "${Version}",
                      "libhiredis-dev"),
        "tally_commit": sh("git", "rev-parse", "--short", "HEAD"),
        "tally": tally,
        "command_line": " ".join(sys.argv),
    }
