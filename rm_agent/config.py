"""The agent's config file (agent.json, 0600) and its state directory."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rm_core.server_urls import ServerUrlError, check_server_url, parse_server_urls


class ConfigError(RuntimeError):
    """The agent config is missing or unreadable; the message says what to do."""


def default_config_path() -> Path:
    """`/etc/restic-manager/agent.json` as root, else `~/.config/restic-manager/agent.json`."""
    env = os.environ.get("RM_AGENT_CONFIG")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/etc/restic-manager/agent.json")
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "restic-manager" / "agent.json"


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # Every URL the server answers at (one per replica, or one load balancer's); `run` starts
    # at a random one and moves on when a connection fails or drops.
    server_urls: list[str] = Field(default_factory=list)
    # The first of server_urls, kept so an agent from before several URLs (it requires this
    # key and ignores unknown ones) still starts on a config written now. Read alone from a
    # config with no server_urls (written by such an agent). One naming a URL that is not
    # in server_urls was edited by hand: refused, rather than silently used or ignored.
    server_url: str = ""
    host_id: str
    agent_token: str
    fingerprint: str | None = None
    # base64 AES-256 key for secrets.enc; lives only in this 0600 file
    secrets_key: str = Field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())
    # pre/post hooks run arbitrary shell commands as the agent user: opt in locally
    allow_hooks: bool = False
    # cap on any restic run when the job sets none (seconds)
    default_timeout_seconds: int = 24 * 3600
    cancel_grace_seconds: float = 30.0
    restic_binary: str = "restic"

    @model_validator(mode="after")
    def _one_list_of_urls(self) -> AgentConfig:
        try:
            # One URL per entry here: the comma form is only for the command line.
            urls = parse_server_urls([check_server_url(url) for url in self.server_urls or [self.server_url]])
            single = check_server_url(self.server_url) if self.server_url else urls[0]
        except ServerUrlError as exc:
            raise ValueError(f"server_urls: {exc}") from None
        if single not in urls:
            raise ValueError(f"server_url {self.server_url!r} is not one of server_urls {urls}: this agent uses "
                             "server_urls; set server_url to its first entry (what older agents read) or remove it")
        self.server_urls, self.server_url = urls, urls[0]
        return self

    def key_bytes(self) -> bytes:
        return base64.b64decode(self.secrets_key)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write via temp file + fsync + rename, so readers see the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_config(path: Path, config: AgentConfig) -> None:
    atomic_write(path, (config.model_dump_json(indent=2) + "\n").encode())


def load_config(path: Path) -> AgentConfig:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no agent config at {path}: run `rm-agent enroll --server URL --token T` first") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied (run as the agent's user)") from None
    try:
        return AgentConfig.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"agent config {path} is invalid: {exc}") from None


def state_dir(config_path: Path) -> Path:
    """All agent state lives beside its config file."""
    return config_path.parent
