#!/bin/sh
# Installs rm-agent on this host and enrolls it. Served by rm-server at /install/install.sh.
# Usage: curl -fsSL SERVER/install/install.sh | sudo sh -s -- --server URL --token TOKEN [--fingerprint SHA256]
set -eu
SERVER="@PUBLIC_URL@"
ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server) SERVER="$2"; shift 2 ;;
    --token|--fingerprint) ARGS="$ARGS $1 $2"; shift 2 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v python3 >/dev/null || { echo "install.sh: python3 (>= 3.11) is required" >&2; exit 1; }
command -v restic >/dev/null || { apt-get install -y restic || echo "install.sh: install restic yourself" >&2; }
mkdir -p /usr/local/lib/restic-manager /etc/restic-manager
curl -fsSL ${FINGERPRINT_INSECURE:-} "$SERVER/install/rm-agent.pyz" -o /usr/local/lib/restic-manager/rm-agent.pyz
printf '#!/bin/sh\nexec python3 /usr/local/lib/restic-manager/rm-agent.pyz "$@"\n' > /usr/local/bin/rm-agent
chmod 0755 /usr/local/bin/rm-agent
# shellcheck disable=SC2086
rm-agent enroll --server "$SERVER" $ARGS --config /etc/restic-manager/agent.json
if command -v systemctl >/dev/null; then
  curl -fsSL "$SERVER/install/rm-agent.service" -o /etc/systemd/system/rm-agent.service 2>/dev/null || true
  systemctl daemon-reload && systemctl enable --now rm-agent || true
fi
echo "rm-agent installed and enrolled."
