#!/usr/bin/env python3
"""Set-up and entry points for a fresh clone: needs only python3 and the package registries.

    python3 dev.py demo     # create .venv, install, run the demo on the embedded default
    python3 dev.py demo --serve  # ... then keep it running with the operator console (Ctrl-C stops it)
    python3 dev.py test     # create .venv, install with test extras, run the whole suite
    python3 dev.py install  # only create .venv and install (from requirements.lock, hash-checked)
    python3 dev.py bench    # the benchmarks (prints tables)
    python3 dev.py reliability  # the reliability suite, rewriting docs/RELIABILITY.md
    python3 dev.py soak [--minutes N] [--seed S]  # the chaos soak with its invariant checker
    python3 dev.py lock [--keep]   # regenerate requirements.lock from pyproject.toml (newest versions)
    python3 dev.py openapi PATH    # re-extract tests/data/halo-openapi-subset.json from Halo's document

Extra arguments go to the underlying command (``python3 dev.py test -k classify``).

Installing: pip installs uv (its pin and hashes are in requirements.lock), uv makes .venv exactly
requirements.lock (``uv pip sync``, hashes required), then installs the project itself and the
application's client (``clients/python``) editable with ``--no-deps``. It runs again whenever pyproject.toml or requirements.lock changes.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
UV = BIN / ("uv.exe" if os.name == "nt" else "uv")
STAMP = VENV / ".installed"
LOCK = ROOT / "requirements.lock"
CLIENT = ROOT / "clients" / "python"  # the application's client, a distribution of its own (httpx only)
# Locked beside the project's own dependencies: the build backend (the editable install runs without
# build isolation, so it is pinned too) and uv, which installs everything else.
TOOLING = ["uv"]


def _stamp() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", LOCK, CLIENT / "pyproject.toml"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _create_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"halo-reconciler needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PY.exists():
        print("creating .venv ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)


def _lock_entry(name: str) -> str:
    """One package's pin and hashes from requirements.lock, as a requirements file of its own."""
    lines: list[str] = []
    keep = False
    for line in LOCK.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = re.split(r"[=<>;\[ ]", line, maxsplit=1)[0].lower() == name
        if keep and not line.lstrip().startswith("#"):
            lines.append(line)
    if not lines:
        sys.exit(f"{LOCK.name} has no {name}: run python3 dev.py lock")
    return "\n".join(lines).rstrip(" \\") + "\n"


def _bootstrap_uv() -> None:
    """pip installs the locked uv (hash-checked) unless .venv already has exactly that one."""
    pin = _lock_entry("uv").split()[0]  # uv==X.Y.Z
    if UV.exists():
        done = subprocess.run([str(UV), "--version"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.split()[1:2] == [pin.split("==")[1]]:
            return
    with tempfile.TemporaryDirectory() as tmp:
        requirement = Path(tmp) / "uv.txt"
        requirement.write_text(_lock_entry("uv"))
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--require-hashes", "--no-deps", "-r", str(requirement)], check=True)


def _ensure_venv() -> None:
    _create_venv()
    wanted = _stamp()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print(f"installing {LOCK.name} into .venv ...", file=sys.stderr, flush=True)
    STAMP.unlink(missing_ok=True)
    _bootstrap_uv()
    uv_pip = [str(UV), "pip"]
    target = ["--quiet", "--python", str(PY)]
    subprocess.run([*uv_pip, "sync", *target, "--require-hashes", str(LOCK)], check=True)
    subprocess.run([*uv_pip, "install", *target, "--no-deps", "--no-build-isolation", "-e", f"{ROOT}[test]"],
                   check=True)
    # The client too (its tests run in the suite); its one dependency, httpx, is in the lock already.
    subprocess.run([*uv_pip, "install", *target, "--no-deps", "--no-build-isolation", "-e", str(CLIENT)], check=True)
    STAMP.write_text(wanted)


def lock(rest: list[str]) -> int:
    """Regenerate requirements.lock from pyproject.toml: dependencies, every extra, build backend, uv.

    Every package goes to its newest allowed version (``--keep``: keep the current pins where
    pyproject.toml still allows them). Other arguments go to ``uv pip compile``
    (``--upgrade-package httpx`` upgrades just one). The lock is universal: every platform, Python
    from the lowest that pyproject.toml allows.
    """
    _create_venv()
    if LOCK.exists():
        _bootstrap_uv()
    elif not UV.exists():
        subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "uv"], check=True)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lowest = re.search(r">=\s*(\d+\.\d+)", project["project"].get("requires-python", ">=3.11"))
    extras = [arg for extra in sorted(project["project"].get("optional-dependencies", {}))
              for arg in ("--extra", extra)]
    upgrade = [] if "--keep" in rest or any(a.startswith(("-P", "--upgrade-package")) for a in rest) else ["--upgrade"]
    rest = [a for a in rest if a != "--keep"]
    tooling = "\n".join([*project["build-system"]["requires"], *TOOLING]) + "\n"
    command = [str(UV), "pip", "compile", "pyproject.toml", "-", *extras, "--universal",
               "--python-version", lowest.group(1) if lowest else "3.11", "--generate-hashes",
               "--custom-compile-command", "python3 dev.py lock", "--output-file", LOCK.name, "--quiet",
               *upgrade, *rest]
    done = subprocess.run(command, cwd=ROOT, input=tooling, text=True)
    if done.returncode == 0:
        print(f"wrote {LOCK.name}; the next dev.py command installs it", file=sys.stderr)
    return done.returncode


# Signals that ask a command to stop: each reaches the child, which stops what it started (the
# suite's fixtures, the benchmarks' and the soak's ``finally``: worker/stopping.py),
# and this process waits for it. Dying at once instead (``subprocess.call``'s way) would leave the
# child, and its servers, running.
FORWARDED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
SI_KERNEL = 0x80  # siginfo's si_code for a signal the kernel sent: the terminal's Ctrl-C, a hang-up


def _run(cmd: list[str]) -> int:
    """Run ``cmd`` in the foreground and return its exit code, forwarding SIGINT, SIGTERM and SIGHUP.

    A signal that the terminal sent (Ctrl-C, a hang-up) went to the whole foreground process group,
    the child included: it is not sent a second time. One that a process sent to this one alone (``kill
    PID``, a CI runner's cancel, a supervisor) is passed on. Where the kernel does not say who sent a
    signal (no ``sigtimedwait``: macOS, Windows), SIGTERM and SIGHUP are passed on and Ctrl-C is left to
    the terminal."""
    if not hasattr(signal, "sigtimedwait"):
        return _run_plain(cmd)
    watched = {*FORWARDED, signal.SIGCHLD}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # from before the child exists: none is lost
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, before))
        while proc.poll() is None:
            info = signal.sigtimedwait(watched, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD or info.si_code == SI_KERNEL:
                continue
            proc.send_signal(info.si_signo)
        return proc.returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _run_plain(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd, cwd=ROOT)
    forwarded = [sig for sig in FORWARDED if sig != signal.SIGINT]
    previous = {sig: signal.signal(sig, lambda signum, _: proc.send_signal(signum)) for sig in forwarded}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue  # the terminal's Ctrl-C reached the child too: wait for it to stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "openapi":  # stdlib only: needs no .venv
        return subprocess.call([sys.executable, str(ROOT / "tools" / "extract_halo_openapi.py"), *rest], cwd=ROOT)
    if command == "lock":
        return lock(rest)
    if command not in {"demo", "test", "bench", "reliability", "soak", "install"}:
        print(__doc__)
        return 0 if command in {"help", "-h", "--help"} else 2
    _ensure_venv()
    if command == "install":
        return 0
    if command == "demo":
        return _run([str(BIN / "halo-reconciler"), "demo", *rest])
    if command == "test":
        cmd = [str(PY), "-m", "pytest", *rest]
    elif command == "reliability":
        cmd = [str(PY), "-m", "tests.reliability.report", *rest]
    elif command == "soak":
        cmd = [str(PY), "-m", "soak", *rest]
    else:
        cmd = [str(PY), "-m", "bench", *rest]
    return _run(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
