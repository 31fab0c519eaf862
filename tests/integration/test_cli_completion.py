"""Shell completion: the script a shell installs, and the answers it gets (as bash asks for them)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # the installed command line, as a shell runs it

CLI = [sys.executable, "-m", "worker.cli"]


def complete(words: str) -> list[str]:
    env = {**os.environ, "_HALO_RECONCILER_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    done = subprocess.run([*CLI], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_scripts_and_answers():
    for shell in ("bash", "zsh", "fish"):
        done = subprocess.run([*CLI, "--show-completion", shell], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "_HALO_RECONCILER_COMPLETE" in done.stdout, (shell, done.stderr)
    assert complete("halo-reconciler prac") == ["practices"]
    assert {"list", "show", "add", "pair", "import"} <= set(complete("halo-reconciler practices "))
    assert complete("halo-reconciler practices list --st") == ["--state"]
    assert {"--actor", "--action", "--since", "--until", "--cursor"} <= set(complete("halo-reconciler audit --"))
