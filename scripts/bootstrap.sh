# Sourced by scripts/check and scripts/demo: make .venv with rotator and its dev tools.
# Reinstalls only when pyproject.toml or requirements/dev.lock changed since the last install,
# so reruns are quick.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "rotator needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  python="$(find_python)"
  echo "==> creating $venv with $python" >&2
  "$python" -m venv "$venv"
fi

# The development tools are the pinned ones of requirements/dev.lock (scripts/lock writes it from
# pyproject.toml), checked against their hashes; rotator itself goes in editable, without deps.
stamp="$venv/.rotator-installed"
wanted="$(cat "$repo/pyproject.toml" "$repo/requirements/dev.lock" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> installing rotator and its development tools into .venv (first run takes a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$repo/requirements/dev.lock"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$repo"
  echo "$wanted" >"$stamp"
fi

export PATH="$venv/bin:$PATH"
cd "$repo"
