# Shared set-up for scripts/serve and scripts/test: a virtualenv in .venv with the package.
# Usage: . scripts/_venv.sh EXTRAS   (e.g. "fast" or "dev,fast")
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  if ! "$PY" -m venv "$ROOT/.venv" 2>/dev/null; then
    rm -rf "$ROOT/.venv"
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    apt_install "python${ver}-venv" || apt_install python3-venv || {
      echo "error: cannot create a virtualenv; install the python3-venv package" >&2; exit 1; }
    "$PY" -m venv "$ROOT/.venv"
  fi
fi
"$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
"$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[$1]"
