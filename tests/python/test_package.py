"""The tally package as a Python user meets it: its version, its stubs,
its docstrings, backends() with capability names, describe(), and errors
from add() and get() that carry the library's explanation."""
import ast
import inspect
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import tally
from tally import _tally

ROOT = Path(__file__).resolve().parents[2]
PKG = Path(tally.__file__).parent


def test_version_is_the_projects():
    text = (ROOT / "CMakeLists.txt").read_text()
    version = re.search(r"project\(tally VERSION ([0-9.]+)", text).group(1)
    assert tally.__version__ == tally.version == version


def test_stubs_name_exactly_what_the_module_has():
    stub = ast.parse((PKG / "_tally.pyi").read_text())
    names = set()
    for node in stub.body:
        if isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    have = {n for n in vars(_tally) if not n.startswith("__")}
    assert names == have, (f"stub only: {sorted(names - have)}; module "
                           f"only: {sorted(have - names)}")
    counter = next(n for n in stub.body
                   if isinstance(n, ast.ClassDef) and n.name == "Counter")
    stubbed = {n.target.id if isinstance(n, ast.AnnAssign) else n.name
               for n in counter.body
               if isinstance(n, (ast.FunctionDef, ast.AnnAssign))}
    real = {n for n in vars(_tally.Counter)
            if not n.startswith("__") or n in ("__init__", "__enter__",
                                               "__exit__", "__reduce__")}
    assert stubbed == real, (sorted(stubbed - real), sorted(real - stubbed))
    assert (PKG / "py.typed").exists()


def test_all_names_only_what_the_package_has():
    # __all__ takes every CAP_* and E* of the module (which expands
    # TALLY_CAPS_MAP and TALLY_ERRNO_MAP); __init__.py must import each.
    missing = [n for n in tally.__all__ if not hasattr(tally, n)]
    assert not missing, f"in __all__ but not imported: {missing}"


def test_help_shows_a_docstring_for_everything():
    for obj in (tally, tally.Counter, tally.Error, tally.TimeoutError,
                tally.Backend, tally.Description, tally.backends,
                tally.capability_names, tally.unlink):
        assert inspect.getdoc(obj), obj
    shown = [n for n in dir(tally.Counter)
             if not n.startswith("_") or n in ("__init__", "__enter__",
                                               "__exit__", "__reduce__")]
    for n in shown:
        doc = inspect.getdoc(getattr(tally.Counter, n))
        assert doc and not doc.startswith(("Initialize self", "Return")), n
    text = tally.Counter.__doc__
    for word in ("backend", "initial", "shared=True", "name=", "create",
                 "exclusive", "spawn", "forkserver"):
        assert word in text, word


def test_backends_name_their_capabilities():
    bits = {getattr(tally, n): n[4:].lower() for n in dir(tally)
            if n.startswith("CAP_")}
    assert tally.capability_names(tally.CAP_LOCKFREE | tally.CAP_NAMED) == (
        "lockfree", "named")
    for b in tally.backends():
        name, summary, caps, built = b  # still a 4-tuple
        assert caps & ~sum(bits) == 0, f"{name}: a bit without a name"
        assert set(b.capabilities) == {v for k, v in bits.items()
                                       if caps & k}
        assert isinstance(built, bool) and summary


def test_describe_is_the_handles():
    with tally.Counter("mutex:wait_ms=250") as c:
        d = c.describe()
        assert (d.backend, d.shared, d.named, d.wait_ms) == (
            "mutex", False, False, 250)
        assert (d.name, d.options) == (None, "")
        assert "locked" in d.capabilities
    caps = {b.name: b.caps for b in tally.backends()}
    with tally.Counter("atomic", shared=True) as c:
        d = c.describe()
        assert d.shared and d.named and d.caps == caps["atomic"]
        assert d.name == c._auto_name and d.options == ""
    with pytest.raises(ValueError, match="closed"):
        c.describe()
    # Shared, and not named: a backend that cannot be (fork only).
    fork_only = [b.name for b in tally.backends() if b.built_in
                 and b.caps & tally.CAP_PSHARED
                 and not b.caps & (tally.CAP_NAMED | tally.CAP_REMOTE)]
    for name in fork_only[:1]:
        with tally.Counter(name, shared=True) as c:
            d = c.describe()
            assert (d.backend, d.shared, d.named, d.caps) == (
                name, True, False, caps[name])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis():
    """A private redis-server on a free port: (port, redis-cli runner)."""
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        pytest.skip("no redis-server (Debian: redis-server)")
    if not any(b.name == "redis" and b.built_in for b in tally.backends()):
        pytest.skip("the redis backend is not built in")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tally-redis-") as d:
        p = subprocess.Popen(["redis-server", "--bind", "127.0.0.1",
                              "--port", str(port), "--save", "",
                              "--appendonly", "no", "--dir", d],
                             stdout=subprocess.DEVNULL)

        def cli(*args):
            return subprocess.run(["redis-cli", "-p", str(port), *args],
                                  capture_output=True, text=True).stdout

        try:
            for _ in range(100):
                if "PONG" in cli("ping"):
                    break
                time.sleep(0.05)
            yield port, cli
        finally:
            p.terminate()
            p.wait(10)


def test_add_and_get_errors_carry_the_librarys_detail(redis):
    port, cli = redis
    key = f"pytest-{os.getpid()}"
    with tally.Counter(f"redis:url=redis://127.0.0.1:{port},key={key}",
                       7) as c:
        c.add(3)
        assert c.value == 10
        cli("del", key)
        cli("rpush", key, "x")
        for use in (lambda: c.add(1), lambda: c.value):
            with pytest.raises(tally.Error) as e:
                use()
            assert e.value.errname == "TALLY_EWRONGTYPE"
            # tally_explain()'s text: the key, and what it holds.
            assert f"redis key '{key}' holds a list" in str(e.value)
        cli("del", key)
