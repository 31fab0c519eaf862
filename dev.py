#!/usr/bin/env python3
"""Set-up and entry points for a fresh clone: needs only python3 and the package registries.

    python3 dev.py demo     # create .venv, install, run the demo on the embedded default
    python3 dev.py test     # create .venv, install with test extras, run the whole suite
    python3 dev.py bench    # the benchmarks (prints tables)
    python3 dev.py reliability  # the reliability suite, rewriting docs/RELIABILITY.md
    python3 dev.py openapi [PATH]  # re-extract tests/data/halo-openapi-subset.json from Halo's document

Extra arguments go to the underlying command (``python3 dev.py test -k classify``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
STAMP = VENV / ".installed"


def _ensure_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"halo-reconciler needs Python 3.11 or newer (this is {sys.version.split()[0]})")
    if not PY.exists():
        print("creating .venv ...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("installing dependencies into .venv ...", file=sys.stderr, flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "openapi":  # stdlib only: needs no .venv
        return subprocess.call([sys.executable, str(ROOT / "tools" / "extract_halo_openapi.py"), *rest], cwd=ROOT)
    if command not in {"demo", "test", "bench", "reliability", "install"}:
        print(__doc__)
        return 0 if command in {"help", "-h", "--help"} else 2
    _ensure_venv()
    if command == "install":
        return 0
    if command == "demo":
        cmd = [str(BIN / "halo-reconciler"), "demo", *rest]
    elif command == "test":
        cmd = [str(PY), "-m", "pytest", *rest]
    elif command == "reliability":
        cmd = [str(PY), "-m", "tests.reliability.report", *rest]
    else:
        cmd = [str(PY), "-m", "bench", *rest]
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
