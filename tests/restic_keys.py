"""Make a test repository's key cheap to open.

`restic init` calibrates its scrypt parameters to about half a second of CPU on the machine
that runs it (here N=32768, r=8, p=7), and every later restic command pays that again to open
the repository. A test repository is opened dozens of times, so on two cores the suite spent
minutes deriving keys. `cheapen(repo, password)` rewrites the repository's one key file with
the same password and master key under N=1024, r=8, p=1 (about a millisecond): the repository
is unchanged otherwise, and every restic version opens it as it opens any other.

The format is restic's own (docs: "Keys, Encryption and MAC" in restic's design document):
a key file holds scrypt parameters, a salt and `data`, the master key encrypted as
IV || AES-256-CTR(plaintext) || Poly1305-AES tag over the ciphertext; scrypt's 64 bytes are
the encryption key, then the MAC key as k (AES-128, 16 bytes) and r (16 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

CHEAP = {"N": 1024, "r": 8, "p": 1}


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes, bytes]:
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=1 << 30, dklen=64)
    return key[:32], key[32:48], key[48:64]  # encryption key, MAC k, MAC r


def _tag(ciphertext: bytes, iv: bytes, k: bytes, r: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    s = encryptor.update(iv) + encryptor.finalize()
    return Poly1305.generate_tag(r + s, ciphertext)  # Poly1305 clamps r itself, as restic does


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return cipher.update(data) + cipher.finalize()


def cheapen(repo: Path, password: str) -> None:
    """Re-key a local repository that has exactly one key; raises if the password is wrong."""
    (old,) = list((repo / "keys").iterdir())
    doc = json.loads(old.read_bytes())
    enc, k, r = _derive(password, base64.b64decode(doc["salt"]), doc["N"], doc["r"], doc["p"])
    blob = base64.b64decode(doc["data"])
    iv, ciphertext, tag = blob[:16], blob[16:-16], blob[-16:]
    if not hmac.compare_digest(_tag(ciphertext, iv, k, r), tag):
        raise ValueError(f"{old}: the password does not open this key")
    master = _ctr(enc, iv, ciphertext)

    salt, iv = os.urandom(64), os.urandom(16)
    enc, k, r = _derive(password, salt, **{"n": CHEAP["N"], "r": CHEAP["r"], "p": CHEAP["p"]})
    ciphertext = _ctr(enc, iv, master)
    doc.update(CHEAP, salt=base64.b64encode(salt).decode(),
               data=base64.b64encode(iv + ciphertext + _tag(ciphertext, iv, k, r)).decode())
    body = json.dumps(doc).encode()
    new = old.with_name(hashlib.sha256(body).hexdigest())  # a key file is named by its hash
    new.write_bytes(body)
    new.chmod(old.stat().st_mode & 0o777)
    old.unlink()
