"""What the server hands a new host — install.sh, the agent zipapp, its systemd unit — with
their SHA-256 sums, and the one-line command that fetches and checks them.

Trust chain: the one-liner carries how to trust this server's TLS certificate (for a
self-signed one: the certificate itself for curl's --cacert plus its public-key pin, never
--insecure) and the SHA-256 of install.sh; install.sh, once checked, carries the same trust
and the SHA-256 of the agent and of the unit. So one copy-pasted line pins everything."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rm_server.config import ServerConfig

AGENT_PYZ = "rm-agent.pyz"
UNIT = "rm-agent.service"
SCRIPT = "install.sh"
RESTIC = "restic"  # an admin's restic build (x86-64 Linux) in the data dir, for install.sh --install-restic


def pubkey_pin(cert_pem: bytes) -> str:
    """curl's --pinnedpubkey form: sha256// + base64 SHA-256 of the DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()


@dataclass(frozen=True)
class Trust:
    """How a host's curl and agent trust this server. A CA-signed certificate (or plain HTTP
    behind a proxy) needs nothing; a self-signed one is trusted by content, not by a CA."""

    cert_b64: str = ""      # self-signed: the DER certificate, base64, for a --cacert file
    pin: str = ""           # self-signed: curl --pinnedpubkey value
    fingerprint: str = ""   # self-signed: SHA-256 of the DER certificate, the agent's --fingerprint

    @classmethod
    def self_signed(cls, cert_pem: bytes, fingerprint: str) -> Trust:
        der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        return cls(base64.b64encode(der).decode(), pubkey_pin(cert_pem), fingerprint)


def _asset(name: str) -> Path | None:
    path = resources.files(__package__).joinpath(name)
    return Path(str(path)) if path.is_file() else None


class Installer:
    """The install files one server serves; sums are cached per file version."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.trust = Trust()
        if config.self_signed_cert_pem and config.tls_fingerprint:
            self.trust = Trust.self_signed(config.self_signed_cert_pem, config.tls_fingerprint)
        self._sums: dict[tuple[str, int, int], str] = {}

    @property
    def public_url(self) -> str:
        """Read at each use: the CLI learns it only once the server listens."""
        return self.config.public_url

    @property
    def agent_urls(self) -> list[str]:
        """What install.sh enrolls a host with: every URL it may reach the server at."""
        return list(self.config.agent_urls) or [self.public_url]

    def agent_path(self) -> Path | None:
        """A build an admin put in the data dir wins over the one this server carries."""
        local = self.data_dir / AGENT_PYZ
        return local if local.is_file() else _asset(AGENT_PYZ)

    def restic_path(self) -> Path | None:
        """The restic hosts get with --install-restic: only one an admin chose and put there."""
        local = self.data_dir / RESTIC
        return local if local.is_file() else None

    def unit(self) -> bytes:
        path = _asset(UNIT)
        assert path is not None, "rm_server/install/rm-agent.service is part of the package"
        return path.read_bytes()

    async def file_sum(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._sums:
            # Tens of MB: hash off the event loop.
            self._sums[key] = await asyncio.get_running_loop().run_in_executor(
                None, lambda: hashlib.sha256(path.read_bytes()).hexdigest())
        return self._sums[key]

    async def script(self) -> bytes:
        agent, restic = self.agent_path(), self.restic_path()
        values = {
            "@SERVER@": self.public_url,
            "@AGENT_URLS@": ",".join(self.agent_urls),
            "@CA_CERT@": self.trust.cert_b64,
            "@PIN@": self.trust.pin,
            "@FINGERPRINT@": self.trust.fingerprint,
            "@AGENT_SHA256@": await self.file_sum(agent) if agent else "",
            "@UNIT_SHA256@": hashlib.sha256(self.unit()).hexdigest(),
            "@RESTIC_SHA256@": await self.file_sum(restic) if restic else "",
        }
        script = _asset(SCRIPT)
        if script is None:  # the package was built without its package data
            raise RuntimeError(f"rm_server/install/{SCRIPT} is missing: reinstall rm-server")
        text = script.read_text("utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        return text.encode()

    async def sums(self) -> dict[str, str]:
        out = {SCRIPT: hashlib.sha256(await self.script()).hexdigest(),
               UNIT: hashlib.sha256(self.unit()).hexdigest()}
        for name, path in ((AGENT_PYZ, self.agent_path()), (RESTIC, self.restic_path())):
            if path:
                out[name] = await self.file_sum(path)
        return out

    async def command(self, token: str) -> str:
        """The ready one-liner: fetch install.sh trusting only this server, check its sum, run it."""
        url = shlex.quote(f"{self.public_url}/install/{SCRIPT}")
        script_sum = hashlib.sha256(await self.script()).hexdigest()
        steps = ['d=$(mktemp -d)']
        curl = "curl -fsS"
        if self.trust.cert_b64:
            steps.append("printf '%s\\n' '-----BEGIN CERTIFICATE-----' "
                         f"'{self.trust.cert_b64}' '-----END CERTIFICATE-----' >\"$d/ca.pem\"")
            curl += f" --cacert \"$d/ca.pem\" --pinnedpubkey '{self.trust.pin}'"
        steps.append(f'{curl} -o "$d/{SCRIPT}" {url}')
        steps.append(f"echo '{script_sum}  '\"$d/{SCRIPT}\" | sha256sum -c")
        # As root (a minimal Debian, a container) there may be no sudo; as anyone else it is needed.
        steps.append('if [ "$(id -u)" = 0 ]; then r=; elif command -v sudo >/dev/null; then r=sudo; '
                     "else echo 'install.sh must run as root: paste this line in a root shell (su -), "
                     "or install sudo' >&2; false; fi")
        # The token last but for the clean-up: options such as --install-restic go after it.
        steps.append(f'$r sh "$d/{SCRIPT}" --token {shlex.quote(token)}')
        # Clean up the temporary directory whatever happened, and still end with the outcome.
        return " && ".join(steps) + '; s=$?; rm -rf "$d"; [ "$s" = 0 ]'
