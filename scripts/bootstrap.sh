# Sourced by scripts/quickstart, scripts/test and scripts/test-latest: make a virtual environment with what
# the job needs, once.
# usage: source scripts/bootstrap.sh notebook|test
#   VASTNB_VENV=<dir>     the environment to make (default .venv)
#   VASTNB_UNPINNED=1     newest releases instead of requirements/lock.txt (scripts/test-latest)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
what="${1:-notebook}"
venv="${VASTNB_VENV:-.venv}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
if [ "${VASTNB_UNPINNED:-}" = 1 ]; then
  pins=(--upgrade --upgrade-strategy eager); lock_id=latest-$(date +%F)
else
  pins=(-c requirements/lock.txt); lock_id=$(sha256sum requirements/lock.txt | cut -c1-16)
fi
stamp="$venv/.installed-$what-$(sha256sum pyproject.toml | cut -c1-16)-$lock_id"
if [ ! -f "$stamp" ]; then
  echo "vastnb: installing into $venv ($what) ..." >&2
  "$venv/bin/python" -m pip install -q "${pins[@]}" pip >&2
  if [ "$what" = test ]; then
    # torch 2.13.0 is a CPU build on this kind of machine; a plain `torch` would pull a multi-GB CUDA build
    "$venv/bin/python" -m pip install -q "${pins[@]}" "torch==2.13.0" >&2
    "$venv/bin/python" -m pip install -q "${pins[@]}" -e ".[test]" >&2
  else
    "$venv/bin/python" -m pip install -q "${pins[@]}" -e ".[notebook]" >&2
  fi
  rm -f "$venv"/.installed-"$what"-*
  touch "$stamp"
fi
if [ "$what" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "vastnb: installing Debian's chromium for the browser test ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  $SUDO apt-get update -qq >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || {
    echo "vastnb: could not install chromium (needs root or passwordless sudo); the browser test will fail" >&2; }
fi
