#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the project into it; idempotent:
# pip runs again only when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

pick_python() {
  for c in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

stamp="$VENV/.installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
py=$(pick_python)
[ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
echo "installing the project into $VENV (first time: a few minutes, ~7 GB with torch)..." >&2
start=$(date +%s)
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --progress-bar off -e ".[dev]"
echo "$want" > "$stamp"
echo "installed in $(( $(date +%s) - start )) s" >&2
