#!/usr/bin/env bash
# Prints the Python 3.11+ interpreter `make` builds the virtualenv with.
#
# The distribution's python3.11 comes first: an optimised, statically linked build. On enforcer's
# hot path (parse, features, grouping, decisions) the backtest's two Python processes needed
# 57-58 us of CPU per event on it against 73-79 us on a source build configured without
# --enable-optimizations and running from a shared libpython (what version managers such as
# pyenv build by default), and the backtest's throughput follows that CPU (README, Benchmarks).
# Then python3.11 on PATH, then python3 (the distribution's, then PATH's). PYTHON=... on make's
# command line overrides the choice.
set -euo pipefail
usable() {
  "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}
for candidate in /usr/bin/python3.11 "$(command -v python3.11 || true)" /usr/bin/python3 \
    "$(command -v python3 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && usable "$candidate"; then
    echo "$candidate"; exit 0
  fi
done
echo "no Python 3.11+ with the venv module found (install python3.11 and python3.11-venv)" >&2
exit 1
