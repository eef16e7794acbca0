# Shared by scripts/test and scripts/demo: install what the project needs, idempotently.
VENV="${RM_VENV:-$PWD/.venv}"

ensure_system_packages() {
  local missing=()
  command -v restic >/dev/null || missing+=(restic)
  command -v rclone >/dev/null || missing+=(rclone)
  command -v tmux >/dev/null || missing+=(tmux)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian packages" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  local py="${PYTHON:-python3}"
  if [ ! -x "$VENV/bin/python" ]; then
    "$py" -m venv "$VENV"
  fi
  # Reinstall only when the project's metadata changed since the last install.
  local stamp="$VENV/.rm-installed" want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
      | grep -v "^WARNING: Location" >&2 || true
    "$VENV/bin/python" -c "import rm_server, aiohttp, textual, pytest_asyncio, xdist" \
      || { echo "scripts: installing the package failed" >&2; exit 1; }
    echo "$want" > "$stamp"
  fi
}
