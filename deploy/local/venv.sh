#!/usr/bin/env bash
# Builds the virtualenv on the given interpreter and installs enforcer with its dev extras.
#   deploy/local/venv.sh PYTHON [VENV]
# Does nothing when the virtualenv is current: built on PYTHON, installed after the last change
# to pyproject.toml. One built on another interpreter is rebuilt, so that a new choice (see
# pick-python.sh, or PYTHON=... on make's command line) takes effect instead of the old one
# lasting for good.
set -euo pipefail
python=${1:?usage: venv.sh PYTHON [VENV]}
venv=${2:-.venv}
if [ -d "$venv" ] && [ "$(cat "$venv/.interpreter" 2>/dev/null)" != "$python" ]; then
  echo "rebuilding $venv on $python"
  rm -rf "$venv"
fi
if [ -f "$venv/.installed" ] && [ "$venv/.installed" -nt pyproject.toml ]; then
  exit 0
fi
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "enforcer needs Python 3.11+"'
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "$python" >"$venv/.interpreter"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e '.[dev]'
touch "$venv/.installed"
