# rlteach: two commands on a fresh machine.
#   make book   builds the online book into _build/html (the main job)
#   make test   runs ruff and the whole test suite (unit, TorchRL parity, notebooks under nbval),
#               then the chapters again under PyTorch's plain CPU kernels on 1 and 2 threads
# Each creates .venv and installs what it needs the first time. torch 2.13.0 (CPU) goes in
# first so that pip does not pull a multi-GB CUDA build for the open `torch>=2.5` range.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rlteach-installed

.PHONY: install test book execute lab bench benchmarks mujoco clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	RLTEACH_QUICK=1 $(PY) -m pytest
	$(PY) scripts/test_any_cpu.py

# The benchmarks page is laid out from the committed bench run in benchmarks/ (nothing trains);
# MathJax is copied into the build from the pinned sphinx-mathjax-offline package (no CDN).
book: $(STAMP)
	$(PY) scripts/benchmarks_page.py
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going

# Re-run every chapter at its full training budget and store the outputs the book shows.
execute: $(STAMP)
	$(PY) scripts/execute_notebooks.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	$(PY) -m rlteach bench

# Re-measure every registered recipe (5 seeds) into benchmarks/ (the two long simple-spread
# entries, about 9 minutes per seed, side by side on the two cores into benchmarks/spread-*/),
# then every recipe that has a Stable-Baselines3 counterpart beside SB3 (3 seeds, RL-Zoo's settings
# read from rl-zoo3) into benchmarks/sb3-zoo/ (an older benchmarks/sb3*/ run with hand-transcribed
# settings then drops off the page), every loss beside TorchRL's into benchmarks/losses.*, and
# regenerate the book's page. Several hours on 2 cores.
benchmarks: $(STAMP)
	nice -n 10 $(PY) -m rlteach bench --seeds 5 --skip mappo-spread ippo-spread sac-hopper td3-hopper \
	  dqn-lunarlander ppo-lunarlander \
	  --out benchmarks
	nice -n 10 $(PY) -m rlteach bench --seeds 5 --algo mappo-spread --out benchmarks/spread-mappo & \
	  a=$$!; nice -n 10 $(PY) -m rlteach bench --seeds 5 --algo ippo-spread \
	  --out benchmarks/spread-ippo & b=$$!; wait $$a && wait $$b
	nice -n 10 $(PY) -m rlteach bench --compare sb3 --seeds 3 --out benchmarks/sb3-zoo
	nice -n 10 $(PY) -m rlteach bench --losses --out benchmarks
	$(PY) scripts/benchmarks_page.py

# The MuJoCo runs (SAC, TD3 and DDPG on Hopper-v5 and HalfCheetah-v5, 100k steps, 3 seeds), two
# at a time, checkpoints in ~/rlteach-runs, results into benchmarks/mujoco/, then the page. After
# an interruption, run it again: each run resumes. From scratch: rm -rf ~/rlteach-runs first.
# About 10 hours on 2 cores.
mujoco: $(STAMP)
	$(PY) scripts/scale_runs.py --suite mujoco --jobs 2
	$(PY) scripts/benchmarks_page.py

clean:
	rm -rf _build
