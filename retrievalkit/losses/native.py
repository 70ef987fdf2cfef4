"""Build a C file of this package into a shared library, once per machine, and load it.

A fused CPU kernel (:mod:`retrievalkit.losses.smooth_ap_native`) is plain C99 with
pthreads, called through :mod:`ctypes`: no torch headers, so a build takes about
a second with the system's C compiler (``$CC``, else ``cc``; Debian: ``apt-get
install gcc libc6-dev``, which ``make install`` does). The library is cached in
``$RETRIEVALKIT_CACHE/native`` (default ``~/.cache/retrievalkit/native``) under a
name that hashes the source, the flags, the compiler's version and this CPU's
flags (``-march=native`` code must not run on another CPU of a shared home);
it is written to a temporary file and renamed, so processes building at once
(DDP ranks) do not clash. ``RETRIEVALKIT_NATIVE=0`` turns the kernels off.

Without a compiler, or when the build fails, :func:`load_library` returns
``None`` and logs why once per process and source; callers then use their torch
code, which computes the same values.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

# -fassociative-math (with its two prerequisites) lets the compiler vectorize the
# sums; no -ffast-math: GCC < 13 would link crtfastmath.o into the library, which
# sets flush-to-zero for the whole process when it is loaded.
FLAGS = (
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fno-signed-zeros",
    "-fassociative-math",
    "-fPIC",
    "-shared",
    "-pthread",
)
# x86: let the compiler use 512-bit vectors where the CPU has them (it prefers 256
# bits otherwise); the Smooth-AP kernel at B = 4096: 33 ms instead of 41 ms here.
X86_FLAGS = ("-mprefer-vector-width=512",)


def compile_flags() -> tuple[str, ...]:
    """:data:`FLAGS`, plus :data:`X86_FLAGS` on x86."""
    x86 = platform.machine().lower() in {"x86_64", "amd64", "i686", "i386"}
    return FLAGS + X86_FLAGS if x86 else FLAGS


def enabled() -> bool:
    """False when ``RETRIEVALKIT_NATIVE`` is ``0`` / ``false`` / ``no`` / ``off``."""
    return os.environ.get("RETRIEVALKIT_NATIVE", "1").strip().lower() not in {
        "0",
        "false",
        "no",
        "off",
    }


def cache_dir() -> Path:
    """``$RETRIEVALKIT_CACHE/native`` (default ``~/.cache/retrievalkit/native``)."""
    root = os.environ.get("RETRIEVALKIT_CACHE", Path.home() / ".cache" / "retrievalkit")
    return Path(root) / "native"


def _cpu_flags() -> str:
    """This CPU's feature flags (Linux), else the machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.machine()


def _compiler_version(compiler: str) -> str:
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30)
    return result.stdout.splitlines()[0] if result.stdout else ""


def build(source: Path, compiler: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """The cached library of ``source`` (built now when missing), compiled with
    :func:`compile_flags` and then ``extra_flags`` (a later flag overrides).

    Raises:
        RuntimeError: the compiler failed (its first error line in the message).
    """
    text = source.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                text,
                " ".join(compile_flags() + extra_flags).encode(),
                _compiler_version(compiler).encode(),
                _cpu_flags().encode(),
            ]
        )
    ).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run(
            [compiler, *compile_flags(), *extra_flags, "-o", str(built), str(source), "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "error" in line]
            first = lines[0] if lines else result.stderr.strip()[:200]
            raise RuntimeError(f"{compiler} could not build {source.name}: {first}")
        os.replace(built, target)
    return target


@functools.cache
def load_library(source_name: str, extra_flags: tuple[str, ...] = ()) -> ctypes.CDLL | None:
    """The library built from ``retrievalkit/losses/<source_name>`` (with
    ``extra_flags``, see :func:`build`), or ``None`` (turned off, no C compiler,
    build failed: logged once) -- callers fall back to torch. Callers check
    :func:`enabled` on each call."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        logger.warning("no C compiler (cc/gcc): %s runs without its fused kernel", source_name)
        return None
    try:
        path = build(Path(__file__).with_name(source_name), compiler, extra_flags)
        return ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        logger.warning("%s runs without its fused kernel: %s", source_name, error)
        return None
