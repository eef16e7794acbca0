# Shared by scripts/test and scripts/demo: install what the project needs, idempotently.
VENV="${RM_VENV:-$PWD/.venv}"

ensure_system_packages() {
  local missing=()
  command -v restic >/dev/null || missing+=(restic)
  command -v rclone >/dev/null || missing+=(rclone)
  command -v tmux >/dev/null || missing+=(tmux)
  # PostgreSQL's server binaries (initdb, pg_ctl): the server suites run on both backends,
  # each test worker on a throwaway cluster of its own (tests/pgcluster.py)
  command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  # haproxy: tests/server/test_haproxy.py checks and runs packaging/haproxy/haproxy.cfg
  # (Debian's package; its service is not needed and stays as the distribution leaves it)
  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
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

# restic 0.18 and restic-rest-server from Debian trixie, unpacked into .cache/trixie/ (gitignored)
# without touching the system's apt state; the tests run the agent against them too.
# Exports RM_RESTIC_018 and RM_REST_SERVER; on failure warns and leaves them unset (the tests
# that need them skip, naming the missing binary).
TRIXIE_DIR="${RM_TRIXIE_DIR:-$PWD/.cache/trixie}"

_debian_mirror() {
  # The Debian mirror this machine already uses (deb822 .sources or one-line .list files).
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk 'BEGIN{IGNORECASE=1} /^URIs:/{u=$2} /^Suites:/{if ($0 ~ /(bookworm|trixie|stable)( |$)/ && u !~ /security/) {print u; exit}} /^$/{u=""}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1=="deb" {for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i ~ /:\/\//) {if ($i !~ /security/) {print $i; exit} break}}' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  return 1
}

ensure_trixie_tools() {
  local restic="$TRIXIE_DIR/root/usr/bin/restic" rest="$TRIXIE_DIR/root/usr/bin/restic-rest-server"
  if [ ! -x "$restic" ] || [ ! -x "$rest" ]; then
    mkdir -p "$TRIXIE_DIR"
    echo "fetching restic 0.18 and restic-rest-server from Debian trixie into $TRIXIE_DIR" >&2
    if ! _fetch_trixie_tools >"$TRIXIE_DIR/fetch.log" 2>&1; then
      echo "WARNING: could not fetch restic 0.18 / restic-rest-server from Debian trixie" \
           "(see $TRIXIE_DIR/fetch.log); the tests that need them will be skipped" >&2
      unset RM_RESTIC_018 RM_REST_SERVER
      return 0
    fi
  fi
  export RM_RESTIC_018="$restic" RM_REST_SERVER="$rest"
}

_fetch_trixie_tools() {
  local mirror d="$TRIXIE_DIR" deb
  mirror=$(_debian_mirror) || { echo "no Debian mirror found in /etc/apt" ; return 1; }
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$d/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache"
              -o Acquire::Retries=2 -o Acquire::http::Timeout=30 -o Debug::NoLocking=1)
  apt-get "${opts[@]}" -qq update || return 1
  (cd "$d/debs" && apt-get "${opts[@]}" -qq download restic restic-rest-server) || return 1
  rm -rf "$d/root.new"
  for deb in "$d"/debs/restic_*.deb "$d"/debs/restic-rest-server_*.deb; do
    [ -f "$deb" ] || { echo "missing $deb"; return 1; }
    dpkg -x "$deb" "$d/root.new" || return 1
  done
  "$d/root.new/usr/bin/restic" version >/dev/null || return 1
  rm -rf "$d/root" && mv "$d/root.new" "$d/root"
  # keep only the unpacked binaries: the lists and .debs are not needed again
  rm -rf "$d/lists" "$d/cache" "$d/debs"
}

# promtool (tests/server/test_prometheus.py checks /metrics and packaging/prometheus/ with it).
# Debian ships it in the `prometheus` package, whose install would also start a Prometheus
# server: the package is unpacked into .cache/promtool/ instead, like restic 0.18 above.
# Exports RM_PROMTOOL; on failure warns and leaves it unset (those tests then skip, naming it).
PROMTOOL_DIR="${RM_PROMTOOL_DIR:-$PWD/.cache/promtool}"

ensure_promtool() {
  if command -v promtool >/dev/null; then
    RM_PROMTOOL="$(command -v promtool)"
    export RM_PROMTOOL
    return 0
  fi
  local tool="$PROMTOOL_DIR/root/usr/bin/promtool"
  if [ ! -x "$tool" ]; then
    mkdir -p "$PROMTOOL_DIR"
    echo "fetching promtool (Debian's prometheus package) into $PROMTOOL_DIR" >&2
    if ! _fetch_promtool >"$PROMTOOL_DIR/fetch.log" 2>&1; then
      echo "WARNING: could not fetch promtool (see $PROMTOOL_DIR/fetch.log);" \
           "the tests that need it will be skipped" >&2
      unset RM_PROMTOOL
      return 0
    fi
  fi
  export RM_PROMTOOL="$tool"
}

_fetch_promtool() {
  local d="$PROMTOOL_DIR" sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  rm -rf "$d/debs" "$d/root.new" && mkdir -p "$d/debs"
  # apt-get download needs no root; an empty package list (a fresh machine) needs an update first
  if ! (cd "$d/debs" && apt-get -qq download prometheus); then
    $sudo apt-get update -qq || return 1
    (cd "$d/debs" && apt-get -qq download prometheus) || return 1
  fi
  dpkg -x "$d"/debs/prometheus_*.deb "$d/root.new" || return 1
  "$d/root.new/usr/bin/promtool" --version >/dev/null || return 1
  rm -rf "$d/root" && mv "$d/root.new" "$d/root" && rm -rf "$d/debs"
}
