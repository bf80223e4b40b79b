"""Compile a generated native core with the system C compiler and load it, cached on disk.

The cache key is a hash of the complete C source, the compiler command and
the Python ABI, so one Program compiles once per machine:
``$XDG_CACHE_HOME/apcheck/native/`` (default ``~/.cache/apcheck/native``;
``APCHECK_CACHE_DIR`` overrides). A module is written to a temporary name and
renamed into place, so concurrent processes never load a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from types import ModuleType

CFLAGS = ("-O1", "-shared", "-fPIC", "-std=gnu11", "-w")
COMPILE_TIMEOUT = 300.0


class BuildError(Exception):
    """No compiler, or the compiler failed: the Python core runs instead."""


@dataclass
class Built:
    module: ModuleType
    path: str
    cached: bool  # loaded from the cache (no compiler run)
    compile_seconds: float


def compiler() -> list[str] | None:
    """The C compiler command: $CC, else cc, gcc or clang on PATH."""
    env = os.environ.get("CC")
    if env:
        cmd = shlex.split(env)
        return cmd if cmd and shutil.which(cmd[0]) else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def cache_dir() -> str:
    explicit = os.environ.get("APCHECK_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "apcheck", "native")


def _key(source: str, cc: list[str]) -> str:
    return hashlib.sha256((source + "\0" + toolchain()).encode()).hexdigest()[:24]


def _load(name: str, path: str) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        raise BuildError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _index_file(key: str) -> str:
    return os.path.join(cache_dir(), f"index-{key}.txt")


def load_indexed(key: str) -> ModuleType | None:
    """The module recorded for a model key (``driver.model_key``), without generating its source."""
    try:
        with open(_index_file(key), encoding="utf-8") as fh:
            name = fh.read().strip()
    except OSError:
        return None
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(cache_dir(), name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
    if not name.startswith("apcheck_") or not os.path.exists(path):
        return None
    try:
        mod = _load(name, path)
    except ImportError:
        return None
    sys.modules[name] = mod
    return mod


def write_index(key: str, built: Built) -> None:
    """Record which module serves a model key (written atomically; a failure only costs speed)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=cache_dir(), prefix=".index-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(built.module.__name__ + "\n")
        os.replace(tmp, _index_file(key))
    except OSError:
        pass


def toolchain() -> str:
    """What, besides the source, decides the compiled module: compiler, flags, Python ABI."""
    cc = compiler()
    abi = sysconfig.get_config_var("EXT_SUFFIX") or ""
    return "\0".join([" ".join(cc or []), " ".join(CFLAGS), abi, sys.version])


def build(source: str) -> Built:
    """Load ``source``'s module from the cache, compiling it first if needed."""
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (set CC, or install cc/gcc)")
    name = "apcheck_" + _key(source, cc)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    directory = cache_dir()
    path = os.path.join(directory, name + suffix)
    if name in sys.modules:
        return Built(sys.modules[name], path, True, 0.0)
    if os.path.exists(path):
        try:
            mod = _load(name, path)
            sys.modules[name] = mod
            return Built(mod, path, True, 0.0)
        except ImportError:
            pass  # a stale or foreign file: rebuild it
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create the cache directory {directory}: {e}") from None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
        src = os.path.join(tmp, name + ".c")
        with open(src, "w", encoding="utf-8") as fh:
            fh.write(source)
        out = os.path.join(tmp, name + suffix)
        include = sysconfig.get_paths()["include"]
        cmd = [*cc, *CFLAGS, f"-DMODNAME={name}", f"-I{include}", src, "-o", out]
        try:
            cp = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(f"{cc[0]}: {e}") from None
        if cp.returncode != 0:
            err = (cp.stderr or cp.stdout).strip().splitlines()
            raise BuildError(f"{cc[0]} failed: " + (err[0] if err else f"exit {cp.returncode}"))
        os.replace(out, path)
    seconds = time.perf_counter() - t0
    try:
        mod = _load(name, path)
    except ImportError as e:
        raise BuildError(f"cannot load the compiled core: {e}") from None
    sys.modules[name] = mod
    return Built(mod, path, False, seconds)
