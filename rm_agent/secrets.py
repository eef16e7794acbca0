"""Repository credentials received from the server, kept in secrets.enc (AES-GCM)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rm_agent.config import atomic_write
from rm_core.protocol import RepoCredentials

MAGIC = b"RMS1"
_AAD = b"restic-manager agent secrets v1"


class SecretsCorrupt(RuntimeError):
    """secrets.enc cannot be decrypted; it is never overwritten silently."""


class SecretStore:
    """Credentials by slot (`repo`, `admin`), encrypted at rest with the config's key."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("secrets key must be 32 bytes (AES-256)")
        self.path = path
        self._aead = AESGCM(key)

    def load(self) -> dict[str, RepoCredentials]:
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 12 + 16:
            raise SecretsCorrupt(
                f"{self.path} is not a restic-manager secrets file; move it away and restart "
                "the agent to receive credentials from the server again"
            )
        nonce = blob[len(MAGIC) : len(MAGIC) + 12]
        try:
            plain = self._aead.decrypt(nonce, blob[len(MAGIC) + 12 :], _AAD)
            data = json.loads(plain)
        except (InvalidTag, ValueError):
            raise SecretsCorrupt(
                f"{self.path} cannot be decrypted with the key in the agent config (corrupt file "
                "or wrong key); move it away and restart the agent to receive credentials again"
            ) from None
        return {slot: RepoCredentials.model_validate(v) for slot, v in data.items()}

    def save(self, creds: dict[str, RepoCredentials]) -> None:
        if self.path.exists():
            self.load()  # refuses (raises) instead of overwriting a file we cannot read
        plain = json.dumps({slot: c.model_dump(mode="json") for slot, c in creds.items()}).encode()
        nonce = os.urandom(12)
        atomic_write(self.path, MAGIC + nonce + self._aead.encrypt(nonce, plain, _AAD))
