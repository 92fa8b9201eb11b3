"""Encryption of provider API keys at rest.

New ciphertexts are ``v1:<key id>:<token>``: AES-256-GCM under the key named by the
key id, where ``token`` is the unpadded url-safe base64 of a 12-byte nonce followed by
the ciphertext and its tag, and ``v1:<key id>`` is bound in as associated data. The AES
key is derived from the configured secret with HKDF-SHA256, so any secret string works.
Several keys can be configured: the first one writes, all of them read, so a key rotates
by putting a new one first and re-encrypting at leisure (:meth:`ApiKeyCipher.is_current`).

The original back-end's ciphertexts (the ``cryptocode`` library's format,
``b64(ct)*b64(salt)*b64(nonce)*b64(tag)``, AES-256-GCM with a 16-byte nonce under an
scrypt-derived key of its ``SECRET_KEY``) are still read with the configured legacy
secrets. scrypt is deliberately slow (tens of milliseconds), so the async methods run
the work in a worker thread; derived legacy keys are cached per salt.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Iterable, Mapping

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._exceptions import ApiKeyDecryptionError

__all__ = ["ApiKeyCipher", "parse_key_ring"]

_VERSION = "v1"
_NONCE_BYTES = 12
_HKDF_INFO = b"genai-backend api-key encryption v1"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

# cryptocode 0.1: scrypt(N=2**14, r=8, p=1, dklen=32), 16-byte salt, nonce and tag.
_LEGACY_SCRYPT_N = 2**14
_LEGACY_SCRYPT_R = 8
_LEGACY_SCRYPT_P = 1
_LEGACY_PART_BYTES = 16


def parse_key_ring(text: str) -> dict[str, str]:
    """Parse ``"<key id>:<secret>,<key id>:<secret>,..."`` into an ordered mapping.

    Whitespace around items is ignored; the first key is the one that writes.

    Raises:
        ValueError: an item has no ``:``, a key id is malformed or repeated, or a secret
            is empty.
    """
    ring: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key_id, sep, secret = item.partition(":")
        key_id, secret = key_id.strip(), secret.strip()
        if not sep or not secret:
            raise ValueError("each encryption key must be written '<key id>:<secret>'")
        if not _KEY_ID.match(key_id):
            raise ValueError(f"encryption key id {key_id!r} must match {_KEY_ID.pattern}")
        if key_id in ring:
            raise ValueError(f"encryption key id {key_id!r} is given twice")
        ring[key_id] = secret
    return ring


def _derive(key_id: str, secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=key_id.encode(), info=_HKDF_INFO).derive(
        secret.encode("utf-8")
    )
    return AESGCM(key)


@functools.lru_cache(maxsize=512)
def _legacy_key(password: bytes, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password,
        salt=salt,
        n=_LEGACY_SCRYPT_N,
        r=_LEGACY_SCRYPT_R,
        p=_LEGACY_SCRYPT_P,
        dklen=32,
        maxmem=64 * 1024 * 1024,
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApiKeyCipher:
    """Encrypt API keys for storage and read back every format the database may hold.

    Args:
        keys: key id → secret, in order; the first key writes, all of them read.
        legacy_secrets: passwords the original back-end encrypted with (its
            ``SECRET_KEY``), tried in order on ``cryptocode``-format ciphertexts.

    Raises:
        ValueError: no key is given, or a key id is malformed.
    """

    def __init__(self, keys: Mapping[str, str], *, legacy_secrets: Iterable[str] = ()) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        for key_id in keys:
            if not _KEY_ID.match(key_id):
                raise ValueError(f"encryption key id {key_id!r} must match {_KEY_ID.pattern}")
        self._keys = {key_id: _derive(key_id, secret) for key_id, secret in keys.items()}
        self._current = next(iter(keys))
        self._legacy = tuple(secret.encode("utf-8") for secret in legacy_secrets if secret)

    @classmethod
    def from_key_ring(cls, key_ring: str, *, legacy_secrets: Iterable[str] = ()) -> ApiKeyCipher:
        """Build a cipher from ``"<key id>:<secret>,..."`` (see :func:`parse_key_ring`)."""
        return cls(parse_key_ring(key_ring), legacy_secrets=legacy_secrets)

    @property
    def current_key_id(self) -> str:
        """The id of the key new ciphertexts are written with."""
        return self._current

    def encrypt(self, plaintext: str) -> str:
        """Encrypt ``plaintext`` with the current key; fast, does not wait."""
        aad = f"{_VERSION}:{self._current}".encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return f"{_VERSION}:{self._current}:{_b64url(nonce + sealed)}"

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt a ciphertext of any supported format.

        A ``cryptocode``-format ciphertext runs scrypt (slow, CPU-bound) unless its key
        is cached; from async code use :meth:`decrypt_async`.

        Raises:
            ApiKeyDecryptionError: the text is not a ciphertext of ours, its key is not
                configured, or it was tampered with.
        """
        if ciphertext.startswith(f"{_VERSION}:"):
            return self._decrypt_current_format(ciphertext)
        if ciphertext.count("*") == 3:
            return self._decrypt_legacy(ciphertext)
        raise ApiKeyDecryptionError("the stored API key is not in a known format")

    def is_current(self, ciphertext: str) -> bool:
        """Tell whether ``ciphertext`` is already written with the current key."""
        return ciphertext.startswith(f"{_VERSION}:{self._current}:")

    async def encrypt_async(self, plaintext: str) -> str:
        """Encrypt in a worker thread; waits for it."""
        return await anyio.to_thread.run_sync(self.encrypt, plaintext)

    async def decrypt_async(self, ciphertext: str) -> str:
        """Decrypt without blocking the event loop.

        The current format (AES-GCM, microseconds) is decrypted in place: a worker
        thread would cost far more than the work. The ``cryptocode`` format runs scrypt,
        so it goes to a worker thread.

        Raises:
            ApiKeyDecryptionError: as :meth:`decrypt`.
        """
        if ciphertext.startswith(f"{_VERSION}:"):
            return self._decrypt_current_format(ciphertext)
        return await anyio.to_thread.run_sync(self.decrypt, ciphertext)

    def _decrypt_current_format(self, ciphertext: str) -> str:
        parts = ciphertext.split(":", 2)
        if len(parts) != 3:
            raise ApiKeyDecryptionError("the stored API key is not in a known format")
        _, key_id, token = parts
        cipher = self._keys.get(key_id)
        if cipher is None:
            raise ApiKeyDecryptionError(f"the API key was encrypted with unknown key {key_id!r}")
        try:
            raw = _unb64url(token)
            if len(raw) <= _NONCE_BYTES:
                raise ValueError("token too short")
            plain = cipher.decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], f"{_VERSION}:{key_id}".encode()
            )
            return plain.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise ApiKeyDecryptionError("the stored API key cannot be decrypted") from exc

    def _decrypt_legacy(self, ciphertext: str) -> str:
        try:
            body, salt, nonce, tag = (
                base64.b64decode(part, validate=True) for part in ciphertext.split("*")
            )
        except (ValueError, binascii.Error) as exc:
            raise ApiKeyDecryptionError("the stored API key is not in a known format") from exc
        if len(salt) != _LEGACY_PART_BYTES or len(tag) != _LEGACY_PART_BYTES or not nonce:
            raise ApiKeyDecryptionError("the stored API key is not in a known format")
        for password in self._legacy:
            key = _legacy_key(password, salt)
            try:
                plain = AESGCM(key).decrypt(nonce, body + tag, None)
            except InvalidTag:
                continue
            try:
                text = plain.decode("utf-8")
            except UnicodeDecodeError:
                break
            # The original treats an empty plaintext as a failed decryption, too.
            if text:
                return text
            break
        raise ApiKeyDecryptionError("the stored API key cannot be decrypted")
