"""The chaos soak, short and seeded, on the real parts (``python3 dev.py soak``; docs/RELIABILITY.md
"Chaos soak"). Its mix is the faults main holds today; the full mix's findings are listed there."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.utils.workers import ROOT

pytestmark = pytest.mark.integration

SEED = 24
MINUTES = 1.5


@pytest.mark.timeout(600)
def test_a_short_seeded_soak_ends_with_no_violation():
    done = subprocess.run([sys.executable, "-m", "soak", "--minutes", str(MINUTES), "--seed", str(SEED),
                           "--mix", "suite", "--settle", "120"],
                          cwd=ROOT, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    faults = int(re.search(r"\*\*faults injected\*\* \| \*\*(\d+)\*\*", done.stdout).group(1))
    invariants = re.search(r"\*\*invariants checked\*\* \| \*\*(\d+)\*\* \| \*\*(\d+)\*\*", done.stdout)
    assert faults >= 5, done.stdout
    assert int(invariants.group(1)) >= 8 and int(invariants.group(2)) == 0, done.stdout
    for line in done.stdout.splitlines():  # every invariant checked something
        row = re.match(r"\| (\w+) \| (\d+) \| (\d+) \|$", line)
        if row and row.group(1) != "ticketed_reason_still_true":  # zero when no key, IP or quota refusal happened
            assert int(row.group(2)) > 0, line
