#!/usr/bin/env bash
# Download, here, the pure-Python packages a lent GPU machine lacks (its image has JAX, flax, optax, chex,
# numpy, pandas, pyarrow, tqdm, pytest, matplotlib, seaborn, six, but no gymnax/gymnasium/hydra), into
# .whl/ (git-ignored), for the device tool's `carry`. See scripts/gpu_checks.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
# The versions installed in .venv (the ones the tests ran with), else the newest.
pins=$("$PY" - <<'PY'
from importlib.metadata import PackageNotFoundError, version
for name in ("gymnax", "gymnasium", "farama-notifications", "hydra-core", "omegaconf"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
PY
)
# shellcheck disable=SC2086
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl $pins
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 pins) is published as a source archive only: build its
# pure-Python wheel here.
"$PY" -m pip wheel --quiet --no-deps -w .whl antlr4-python3-runtime==4.9.3
ls -la .whl
