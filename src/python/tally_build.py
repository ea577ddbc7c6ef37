"""tally's PEP 517 build backend: `pip install .` and `python3 -m build`.

The package is built by the project's own CMake build, as `cmake --install
--component python` puts it in place (src/python/CMakeLists.txt): the same
sources, flags and optional libraries (Concurrency Kit, hiredis) as the C
library's own build, and no second list of them here.  The version is the
one in CMakeLists.txt's project(); the metadata is pyproject.toml's
[project] table.

It needs nothing beyond the standard library, cmake and a C compiler, so it
builds offline, also in pip's isolated build environment (pyproject.toml
requires no package).  Environment: CMAKE_BUILD_PARALLEL_LEVEL (jobs; the
CPU count otherwise), TALLY_CMAKE_ARGS (more -D options for the configure).
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
PURELIB_DIR = "site"  # TALLY_PYTHON_INSTALL_DIR inside the staging prefix


def _version() -> str:
    text = (ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(\s*tally\s+VERSION\s+([0-9][0-9.]*)", text)
    if not m:
        raise RuntimeError("CMakeLists.txt: no 'project(tally VERSION ...)'")
    return m.group(1)


def _project() -> Dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    with open(ROOT / "pyproject.toml", "rb") as f:
        return dict(tomllib.load(f)["project"])


def _metadata() -> str:
    """METADATA (core metadata 2.1) from pyproject.toml's [project]."""
    p = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}",
             f"Version: {_version()}", f"Summary: {p['description']}"]
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    for label, url in p.get("urls", {}).items():
        lines.append(f"Project-URL: {label}, {url}")
    for c in p.get("classifiers", []):
        lines.append(f"Classifier: {c}")
    body = ""
    if isinstance(p.get("readme"), str):
        body = (ROOT / p["readme"]).read_text()
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _tag() -> str:
    """cp311-cp311-linux_x86_64: this interpreter, its ABI, its platform
    (a free-threaded build's ABI is cp313t)."""
    impl = "cp" if sys.implementation.name == "cpython" else "py"
    py = f"{impl}{sys.version_info[0]}{sys.version_info[1]}"
    abi = py + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{py}-{abi}-{plat}"


def _run(cmd: List[str]) -> None:
    print("tally_build:", " ".join(shlex.quote(c) for c in cmd),
          file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def _cmake_package(stage: Path, build: Path) -> Path:
    """Configure, build the extension and install its component into
    stage; the package's directory there."""
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count()))
    _run(["cmake", "-S", str(ROOT), "-B", str(build),
          "-DCMAKE_BUILD_TYPE=Release", "-DTALLY_BUILD_TESTS=OFF",
          "-DTALLY_BUILD_EXAMPLES=OFF", "-DTALLY_WITH_PYTHON=ON",
          f"-DPython3_EXECUTABLE={sys.executable}",
          f"-DTALLY_PYTHON_INSTALL_DIR={PURELIB_DIR}",
          *shlex.split(os.environ.get("TALLY_CMAKE_ARGS", ""))])
    _run(["cmake", "--build", str(build), "--target", "tally_python",
          "-j", jobs])
    _run(["cmake", "--install", str(build), "--component", "python",
          "--prefix", str(stage)])
    pkg = stage / PURELIB_DIR / "tally"
    if not any(pkg.glob("_tally.*")):
        raise RuntimeError(f"the CMake build installed no extension "
                           f"into {pkg} (is python3-dev installed?)")
    return pkg


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
    return f"{path},sha256={digest.rstrip(b'=').decode()},{len(data)}"


def _write_wheel(wheel_directory: str, pkg: Path) -> str:
    name, version = "tally", _version()
    dist_info = f"{name}-{version}.dist-info"
    filename = f"{name}-{version}-{_tag()}.whl"
    files: List[Tuple[str, bytes]] = []
    for f in sorted(pkg.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            files.append((f"tally/{f.relative_to(pkg).as_posix()}",
                          f.read_bytes()))
    files.append((f"{dist_info}/METADATA", _metadata().encode()))
    files.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: tally_build\n"
        f"Root-Is-Purelib: false\nTag: {_tag()}\n").encode()))
    files.append((f"{dist_info}/top_level.txt", b"tally\n"))
    record = [_record_line(p, d) for p, d in files]
    record.append(f"{dist_info}/RECORD,,")
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w",
                         zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if path.endswith(".so")
                                  else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return filename


# ---- PEP 517 hooks ----------------------------------------------------------

def get_requires_for_build_wheel(
        config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(
        config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def build_wheel(wheel_directory: str,
                config_settings: Optional[Dict[str, Any]] = None,
                metadata_directory: Optional[str] = None) -> str:
    with tempfile.TemporaryDirectory(prefix="tally-wheel-") as tmp:
        pkg = _cmake_package(Path(tmp) / "stage", Path(tmp) / "build")
        return _write_wheel(wheel_directory, pkg)


# What an sdist holds: everything the CMake build reads (the top level is
# fixed: DESIGN.md), without build trees.  Listed by git where the source is
# a checkout (tracked files and new ones it does not ignore), else (an
# unpacked sdist) every file under these.
_SDIST_TOP = ("CMakeLists.txt", "CMakePresets.json", "README.md",
              "pyproject.toml", ".clang-format", ".gitignore", ".ci",
              "include", "src", "cmake",
              "backends", "tools", "tests", "examples", "bench")


def _sdist_files() -> Iterator[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached",
             "--others", "--exclude-standard", "--", *_SDIST_TOP],
            check=True, capture_output=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
    if not names:
        for top in _SDIST_TOP:
            p = ROOT / top
            found = [p] if p.is_file() else sorted(p.rglob("*"))
            names += [f.relative_to(ROOT).as_posix() for f in found
                      if f.is_file() and "__pycache__" not in f.parts]
    for n in sorted(set(names)):
        if (ROOT / n).is_file():  # not a deleted one git still lists
            yield n


def build_sdist(sdist_directory: str,
                config_settings: Optional[Dict[str, Any]] = None) -> str:
    base = f"tally-{_version()}"
    filename = f"{base}.tar.gz"

    def add(t: tarfile.TarFile, arcname: str, data: bytes,
            mode: int = 0o644) -> None:
        info = tarfile.TarInfo(f"{base}/{arcname}")
        info.size, info.mode, info.mtime = len(data), mode, 1767225600
        t.addfile(info, io.BytesIO(data))

    with tarfile.open(Path(sdist_directory) / filename, "w:gz",
                      format=tarfile.PAX_FORMAT) as t:
        add(t, "PKG-INFO", _metadata().encode())
        for n in _sdist_files():
            path = ROOT / n
            add(t, n, path.read_bytes(),
                0o755 if os.access(path, os.X_OK) else 0o644)
    return filename
