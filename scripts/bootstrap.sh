# Sourced by scripts/quickstart and scripts/test: make .venv with what the job needs, once.
# usage: source scripts/bootstrap.sh notebook|test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
what="${1:-notebook}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed-$what-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "vastnb: installing into .venv ($what) ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >&2
  if [ "$what" = test ]; then
    # torch 2.13.0 is a CPU build on this kind of machine; a plain `torch` would pull a multi-GB CUDA build
    .venv/bin/python -m pip install -q "torch==2.13.0" >&2
    .venv/bin/python -m pip install -q -e ".[test]" >&2
  else
    .venv/bin/python -m pip install -q -e ".[notebook]" >&2
  fi
  touch "$stamp"
fi
if [ "$what" = test ] && ! command -v chromium >/dev/null 2>&1; then
  echo "vastnb: installing Debian's chromium for the browser test ..." >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi
  $SUDO apt-get update -qq >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || {
    echo "vastnb: could not install chromium (needs root or passwordless sudo); the browser test will fail" >&2; }
fi
