"""Scenario 5: the test suite's wall time (`pytest` alone, as `make test` runs it first: on
TEST_WORKERS processes, 4 unless set, each test file on one of them)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass

from bench.env import BIN, ROOT


@dataclass
class SuiteRun:
    seconds: float
    returncode: int
    summary: str  # pytest's last line: "312 passed, 2 skipped in 95.1s"


WORKERS = ["-n", os.environ.get("TEST_WORKERS", "4"), "--dist", "loadfile"]


def run_suite() -> SuiteRun:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", *WORKERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next(
        (line.strip("= ") for line in reversed(lines) if re.search(r"\d+ (passed|failed)", line)),
        lines[-1] if lines else done.stderr.strip()[-200:],
    )
    return SuiteRun(seconds, done.returncode, summary)
