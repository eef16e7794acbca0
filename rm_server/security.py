"""Passwords (scrypt), bearer tokens (random, stored as SHA-256) and the master key (AES-GCM)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

_N, _R, _P = 2**14, 8, 1


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=_N, r=_R, p=_P).derive(password.encode())
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = Scrypt(salt=base64.b64decode(salt), length=32, n=int(n), r=int(r), p=int(p)).derive(
            password.encode()
        )
    except ValueError:
        return False
    return hmac.compare_digest(derived, base64.b64decode(key))


@functools.cache
def dummy_hash() -> str:
    """A hash that costs as much to check as a real one, so a login for an unknown user
    takes as long as one with a wrong password. Made on first use: at import it cost every
    admin command a scrypt run (50 ms) it never needed."""
    return hash_password(secrets.token_hex(8))


def new_token(prefix: str) -> str:
    """A bearer token; the prefix says what it is for when one turns up in a log."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file atomically (temp file + fsync + rename). The temp file's name is
    this writer's own (mkstemp, 0600): the replicas of `serve --workers N` start at once on
    one data dir, and with one shared temp name one's rename took the other's file away
    (it failed to start: tests/e2e/test_workers.py)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SealError(Exception):
    """Sealed data could not be opened: wrong master key or corrupted data."""


class MasterKey:
    """AES-256-GCM key kept in DATA/master.key (0600); never stored in the database."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        # A separate key for fingerprints, so no HMAC output is ever computed under the AEAD key.
        self._fp_key = hmac.new(key, b"rm-fingerprint-key", hashlib.sha256).digest()

    @classmethod
    def load_or_create(cls, path: Path) -> "MasterKey":
        if path.exists():
            key = path.read_bytes()
            if len(key) != 32:
                raise SealError(f"{path} is not a 32-byte key; restore it from your backup of the data dir")
            return cls(key)
        key = AESGCM.generate_key(bit_length=256)
        write_private(path, key)
        return cls(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed credentials cannot be opened with this master key") from exc

    def check_value(self) -> str:
        """A value stored in the database that only this key opens: a replica started with
        another master.key finds out before it seals anything the others cannot open."""
        return _b64(self.seal(b"rm-master-key-check", "master-key-check"))

    def opens(self, check_value: str) -> bool:
        try:
            return self.open(base64.b64decode(check_value), "master-key-check") == b"rm-master-key-check"
        except (SealError, ValueError):
            return False

    def fingerprint(self, secret: str) -> str:
        """A short fingerprint so operators can compare secrets without seeing them. Keyed
        (HMAC with a key derived from the master key): an unkeyed hash of a repository
        password lets any viewer test guesses offline at billions per second; without
        master.key a guess cannot even be checked."""
        return hmac.new(self._fp_key, b"rm-fp:" + secret.encode(), hashlib.sha256).hexdigest()[:16]
