#!/usr/bin/env python3
"""What each candidate server operation for one exactly-once request costs
the server, measured side by side in one run.

    bench/redis-server-ops.py [--add-script FILE] [--requests N]
                              [--depth K] [--rounds R] [--out DIR]

Starts a private redis-server on loopback (no persistence) and sends, on
one connection with K requests in flight (default 16), N requests of each
candidate, R rounds interleaved:

  incrby     INCRBY key 1: the floor, no exactly-once at all
  return1    EVALSHA of "return 1": what calling a script costs
  slim       EVALSHA of a two-call script: SET record seq PX ttl GET, then
             INCRBY (a duplicate puts the record back and adds nothing)
  strict     EVALSHA of a three-call script: GET record, INCRBY, SET record
             "seq value" PX ttl; a request is applied only when its
             sequence number follows the record's (a duplicate answers
             the recorded value, a gap is refused)
  current    EVALSHA of the redis backend's add script (FILE, by default
             read from the source tree)
  multi      MULTI, INCRBY, SET record PX, EXEC: no duplicate check is
             possible inside it; its cost, for comparison

For each it reads INFO commandstats (the microseconds Redis spends inside
the request's top-level commands: a script's own calls are counted inside
its EVALSHA) and INFO cpu (the server's whole CPU time, parsing and I/O
included) before and after, and reports both per request, with the
client's requests per second.  Writes DIR/redis-server-ops.json (every
number and the machine context) and prints a table (medians, min-max).
"""
import argparse
import hashlib
import json
import os
import re
import socket
import statistics
import time

from redis_common import commandstats, context, private_server, server_cpu

SLIM = """
local old = redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'GET')
if old and tonumber(old) >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], old, 'PX', ARGV[3])
  return {1}
end
return {0, redis.call('INCRBY', KEYS[1], ARGV[1])}
"""

STRICT = """
local rec = redis.call('GET', KEYS[2])
local seq = tonumber(ARGV[1])
if rec then
  local sp = string.find(rec, ' ', 1, true)
  local last = tonumber(string.sub(rec, 1, sp - 1))
  if seq <= last then return {1, string.sub(rec, sp + 1)} end
  if seq > last + 1 then return redis.error_reply('TALLYGAP ' .. last) end
end
local v = redis.call('INCRBY', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. v, 'PX', ARGV[3])
return {0, v}
"""


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A bare RESP connection: send many, then read that many replies."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(1 << 16)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(1 << 16)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if kind == b"*":
            return [self.reply() for _ in range(max(int(rest), 0))]
        raise RuntimeError("unexpected reply " + repr(line))

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.reply()

    def run(self, requests, replies_each, n, depth):
        """Send requests(i) for i in range(n), depth in flight."""
        sent = done = 0
        while done < n:
            batch = []
            while sent < n and sent - done < depth:
                batch.append(requests(sent))
                sent += 1
            if batch:
                self.s.sendall(b"".join(batch))
            # Read one request's replies, then top up again.
            for _ in range(replies_each):
                self.reply()
            done += 1


def current_script(path):
    """The backend's add script: a .lua file, or the ADD_SCRIPT literal of
    backends/redis.c (the C string pieces joined and unescaped)."""
    text = open(path).read()
    if path.endswith(".lua"):
        return text
    m = re.search(r"ADD_SCRIPT\[\]\s*=\s*(.*?);\n", text, re.S)
    pieces = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(pieces).encode().decode("unicode_escape")


def default_script():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for p in ("backends/redis/scripts/add.lua", "backends/redis.c"):
        if os.path.exists(os.path.join(root, p)):
            return os.path.join(root, p)
    raise SystemExit("redis-server-ops: no add script found: --add-script")


def candidates(conn, script):
    sha = {}
    for name, body in (("return1", "return 1"), ("slim", SLIM),
                       ("strict", STRICT), ("current", script)):
        sha[name] = conn.call("SCRIPT", "LOAD", body).decode()
        assert sha[name] == hashlib.sha1(body.encode()).hexdigest()
    rec = "k.tally-id.bench"
    conn.call("SET", "k", "0")
    # The current script: ARGV = seq, delta, ttl ms, the client's sum so
    # far (tally's request layout, backends/redis/scripts/add.lua).  Each
    # request a new sequence number.
    return {
        "incrby": (lambda i: resp("INCRBY", "k", 1), 1, ("incrby",)),
        "return1": (lambda i: resp("EVALSHA", sha["return1"], 0), 1,
                    ("evalsha",)),
        "slim": (lambda i: resp("EVALSHA", sha["slim"], 2, "k", rec + "s",
                                1, i + 1, 600000), 1, ("evalsha",)),
        "strict": (lambda i: resp("EVALSHA", sha["strict"], 2, "k",
                                  rec + "t", i + 1, 1, 600000), 1,
                   ("evalsha",)),
        "current": (lambda i: resp("EVALSHA", sha["current"], 2, "k",
                                   rec + "c", i + 1, 1, 600000, i + 1), 1,
                    ("evalsha",)),
        "multi": (lambda i: resp("MULTI") + resp("INCRBY", "k", 1) +
                  resp("SET", rec + "m", i + 1, "PX", 600000) +
                  resp("EXEC"), 4, ("multi", "exec")),
    }


def measure(port, conn, cand, n, depth, offset):
    make, replies, top = cand
    before, cpu0, t0 = commandstats(port), server_cpu(port), time.time()
    conn.run(lambda i: make(offset + i), replies, n, depth)
    took = time.time() - t0
    after, cpu1 = commandstats(port), server_cpu(port)
    usec = sum(after.get(c, (0, 0))[1] - before.get(c, (0, 0))[1]
               for c in top)
    return {"requests": n, "seconds": took, "requests_per_sec": n / took,
            "command_usec_per_request": usec / n,
            "server_cpu_usec_per_request": (cpu1 - cpu0) * 1e6 / n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--add-script")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    script = current_script(a.add_script or default_script())

    with private_server() as port:
        ctx = context()
        ctx["requests"], ctx["depth"] = a.requests, a.depth
        conn = Conn(port)
        cands = candidates(conn, script)
        runs = {name: [] for name in cands}
        for r in range(a.rounds):
            for name, cand in cands.items():
                runs[name].append(measure(port, conn, cand, a.requests,
                                          a.depth, r * a.requests))
        ctx["loadavg_after"] = os.getloadavg()[0]
        # Every candidate but return1 adds 1 per request: the count says
        # that each did its work, once.
        ctx["counter_after"] = int(conn.call("GET", "k"))
        ctx["counter_expected"] = 5 * a.rounds * a.requests
        if ctx["counter_after"] != ctx["counter_expected"]:
            raise SystemExit(f"redis-server-ops: the counter holds "
                             f"{ctx['counter_after']}, not "
                             f"{ctx['counter_expected']}")

    summary = {}
    for name, rs in runs.items():
        s = summary[name] = {}
        for f in ("command_usec_per_request", "server_cpu_usec_per_request",
                  "requests_per_sec"):
            v = [x[f] for x in rs]
            s[f] = {"median": statistics.median(v), "min": min(v),
                    "max": max(v)}
    result = {"context": ctx, "summary": summary, "runs": runs}
    if a.out:
        with open(os.path.join(a.out, "redis-server-ops.json"), "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    print(f"{'candidate':10s} {'command us/req':>20s} "
          f"{'server CPU us/req':>20s} {'requests/s':>18s}")
    for name, s in summary.items():
        c, u, q = (s["command_usec_per_request"],
                   s["server_cpu_usec_per_request"], s["requests_per_sec"])
        print(f"{name:10s} {c['median']:6.2f} ({c['min']:.2f}-{c['max']:.2f})"
              f"  {u['median']:6.2f} ({u['min']:.2f}-{u['max']:.2f})"
              f"  {q['median']:9.0f}")
    print(f"{a.rounds} rounds of {a.requests} requests, {a.depth} in flight; "
          f"load average {ctx['loadavg_before']:.2f} before, "
          f"{ctx['loadavg_after']:.2f} after; {ctx['online_cpus']} CPUs")


if __name__ == "__main__":
    main()
