"""Run every chapter under nbval again with PyTorch's non-vectorised kernels, on 1 and 2 threads.

    python scripts/test_any_cpu.py [PYTEST ARGS ...]      (default: the notebooks/ folder)

The outputs nbval compares (cells marked ``# NBVAL_CHECK_OUTPUT``) must not depend on the
processor that runs them: a reader's laptop rounds differently from the machine that stored the
outputs. PyTorch picks its CPU kernels at start-up from the processor's vector extensions
(AVX-512, AVX2, NEON, ...); ``ATEN_CPU_CAPABILITY=default`` forces the plain ones, which round
sums and products in another order. The main test run (``python -m pytest``) uses this machine's
best kernels and all its threads; this script repeats the chapters under the plain kernels with
1 and with 2 threads (``OMP_NUM_THREADS``, read by torch in each notebook kernel). A value that
changes under any of these settings is printed at a precision rounding can change, or comes
from an optimisation: assert it with a tolerance instead of comparing its digits.
``make test`` runs this after the main run; so do the GitHub workflows.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = (
    {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"},
    {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "2"},
)
PROBE = "import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"


def environment(setting: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ, **setting, MKL_NUM_THREADS=setting["OMP_NUM_THREADS"])
    env.setdefault("RLTEACH_QUICK", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    pytest_args = list(argv if argv is not None else sys.argv[1:]) or ["notebooks"]
    for setting in SETTINGS:
        env = environment(setting)
        # Check that the setting takes effect before relying on it.
        probe = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
        )
        capability, threads = probe.stdout.split()
        label = ", ".join(f"{k}={v}" for k, v in setting.items())
        if capability.lower() != "default" or threads != setting["OMP_NUM_THREADS"]:
            print(f"{label}: torch runs {capability} kernels on {threads} threads", file=sys.stderr)
            return 1
        print(f"== chapters under {label} (torch: {capability} kernels, {threads} threads)",
              flush=True)
        code = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=ROOT)
        if code.returncode != 0:
            print(f"== chapters FAILED under {label}", file=sys.stderr)
            return code.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
