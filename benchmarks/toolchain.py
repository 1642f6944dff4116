"""Check for (and, as root, install) the C++ build deps, then build loadgen and backend.

Both programs use gRPC's generic (raw bytes) API, so only g++, pkg-config and
Debian's libgrpc++-dev are needed: no protoc step. Binaries go to build/ and are
rebuilt only when their source is newer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

APT_PACKAGES = ("g++", "pkg-config", "libgrpc++-dev")
PROGRAMS = ("loadgen", "backend")


def missing_deps() -> list[str]:
    """Names of what is missing to build the C++ programs."""
    missing = [tool for tool in ("g++", "pkg-config") if shutil.which(tool) is None]
    if not missing:
        probe = subprocess.run(["pkg-config", "--exists", "grpc++"], check=False)
        if probe.returncode != 0:
            missing.append("grpc++ (libgrpc++-dev)")
    return missing


def ensure_deps(allow_install: bool) -> None:
    """Return when the build deps are present; install them with apt-get if allowed."""
    missing = missing_deps()
    if not missing:
        return
    command = ["apt-get", "install", "-y", *APT_PACKAGES]
    message = f"missing build dependencies: {', '.join(missing)}; they come from: {' '.join(command)}"
    if not allow_install or os.geteuid() != 0:
        raise SystemExit(f"bench: {message}\n(run that as root, then run the benchmark again)")
    print(f"bench: {message}\nbench: installing them now", flush=True)
    subprocess.run(command, check=True)
    if missing_deps():
        raise SystemExit(f"bench: still missing after apt-get: {', '.join(missing_deps())}")


def _compile_command(source: Path, binary: Path) -> list[str]:
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "grpc++"], check=True, capture_output=True, text=True
    ).stdout.split()
    return ["g++", "-std=c++17", "-O2", "-o", str(binary), str(source), *flags, "-pthread"]


def build(source_dir: Path, build_dir: Path) -> dict[str, Path]:
    """Compile each stale program (in parallel); return program name -> binary path."""
    build_dir.mkdir(parents=True, exist_ok=True)
    binaries = {name: build_dir / name for name in PROGRAMS}
    jobs: dict[str, subprocess.Popen[bytes]] = {}
    for name, binary in binaries.items():
        source = source_dir / f"{name}.cc"
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            print(f"bench: building {binary}", flush=True)
            jobs[name] = subprocess.Popen(_compile_command(source, binary))
    failed = [name for name, job in jobs.items() if job.wait() != 0]
    if failed:
        raise SystemExit(f"bench: compiling {', '.join(failed)} failed (see the g++ output above)")
    return binaries
