from __future__ import annotations

import base64

import cryptocode
import pytest

from persistence import ApiKeyCipher, ApiKeyDecryptionError, PersistenceError, parse_key_ring

ORIGINAL_SECRET = "c41302ce0f1758f4ae5dcc65729fd50a"


def _cipher(**keys: str) -> ApiKeyCipher:
    return ApiKeyCipher(keys or {"k1": "first secret"}, legacy_secrets=[ORIGINAL_SECRET])


class TestCurrentFormat:
    def test_roundtrip(self) -> None:
        cipher = _cipher()
        token = cipher.encrypt("sk-123 ünï")
        assert token.startswith("v1:k1:")
        assert "sk-123" not in token
        assert cipher.decrypt(token) == "sk-123 ünï"
        assert cipher.is_current(token)

    def test_nonce_is_random(self) -> None:
        cipher = _cipher()
        assert cipher.encrypt("same") != cipher.encrypt("same")

    async def test_async_roundtrip(self) -> None:
        cipher = _cipher()
        token = await cipher.encrypt_async("sk-async")
        assert await cipher.decrypt_async(token) == "sk-async"

    async def test_async_decrypt_needs_no_worker_thread(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A chat turn decrypts a key per message: AES-GCM is quicker than a thread hop.
        cipher = _cipher()
        token = cipher.encrypt("sk-inline")
        threads: list[object] = []

        async def run_sync(func: object, *args: object) -> object:
            threads.append(func)
            return func(*args)  # type: ignore[operator]

        monkeypatch.setattr("anyio.to_thread.run_sync", run_sync)
        assert await cipher.decrypt_async(token) == "sk-inline"
        assert threads == []
        legacy = cryptocode.encrypt("sk-legacy", ORIGINAL_SECRET)
        assert await cipher.decrypt_async(legacy) == "sk-legacy"
        assert len(threads) == 1  # scrypt stays off the event loop

    def test_rotation_reads_old_writes_new(self) -> None:
        old = ApiKeyCipher({"k1": "first secret"})
        old_token = old.encrypt("sk-old")
        rotated = ApiKeyCipher({"k2": "second secret", "k1": "first secret"})
        assert rotated.current_key_id == "k2"
        assert rotated.decrypt(old_token) == "sk-old"
        assert not rotated.is_current(old_token)
        new_token = rotated.encrypt("sk-new")
        assert new_token.startswith("v1:k2:")
        with pytest.raises(ApiKeyDecryptionError):
            old.decrypt(new_token)

    def test_same_id_other_secret_fails(self) -> None:
        token = ApiKeyCipher({"k1": "a"}).encrypt("sk")
        with pytest.raises(ApiKeyDecryptionError):
            ApiKeyCipher({"k1": "b"}).decrypt(token)

    @pytest.mark.parametrize("position", [6, 10, -1])
    def test_tampered_token(self, position: int) -> None:
        cipher = _cipher()
        token = cipher.encrypt("sk-123")
        flipped = "A" if token[position] != "A" else "B"
        tampered = token[:position] + flipped + token[position + 1 :]
        with pytest.raises(ApiKeyDecryptionError):
            cipher.decrypt(tampered)

    def test_key_id_is_authenticated(self) -> None:
        cipher = ApiKeyCipher({"k1": "same", "k2": "same"})
        token = cipher.encrypt("sk")
        with pytest.raises(ApiKeyDecryptionError):
            cipher.decrypt(token.replace("v1:k1:", "v1:k2:"))

    @pytest.mark.parametrize(
        "garbage", ["", "v1:", "v1:k1", "v1:k1:", "v1:k1:!!!", "v1:zz:AAAA", "sk-plain", "a*b*c*d"]
    )
    def test_garbage_is_a_domain_error(self, garbage: str) -> None:
        with pytest.raises(ApiKeyDecryptionError) as info:
            _cipher().decrypt(garbage)
        assert isinstance(info.value, PersistenceError)


class TestOriginalFormat:
    def test_reads_cryptocode_ciphertext(self) -> None:
        token = cryptocode.encrypt("sk-original", ORIGINAL_SECRET)
        assert token.count("*") == 3
        cipher = _cipher()
        assert cipher.decrypt(token) == "sk-original"
        assert not cipher.is_current(token)

    async def test_reads_cryptocode_ciphertext_async(self) -> None:
        token = cryptocode.encrypt("sk-async-original", ORIGINAL_SECRET)
        assert await _cipher().decrypt_async(token) == "sk-async-original"

    def test_tries_every_legacy_secret(self) -> None:
        token = cryptocode.encrypt("sk", "older secret")
        cipher = ApiKeyCipher({"k1": "x"}, legacy_secrets=[ORIGINAL_SECRET, "older secret"])
        assert cipher.decrypt(token) == "sk"

    def test_wrong_legacy_secret(self) -> None:
        token = cryptocode.encrypt("sk", "another secret")
        with pytest.raises(ApiKeyDecryptionError):
            _cipher().decrypt(token)

    def test_no_legacy_secret_configured(self) -> None:
        token = cryptocode.encrypt("sk", ORIGINAL_SECRET)
        with pytest.raises(ApiKeyDecryptionError):
            ApiKeyCipher({"k1": "x"}).decrypt(token)

    def test_tampered_tag(self) -> None:
        body, salt, nonce, tag = cryptocode.encrypt("sk-123", ORIGINAL_SECRET).split("*")
        raw = bytearray(base64.b64decode(tag))
        raw[0] ^= 1
        tampered = "*".join([body, salt, nonce, base64.b64encode(bytes(raw)).decode()])
        with pytest.raises(ApiKeyDecryptionError):
            _cipher().decrypt(tampered)

    def test_empty_plaintext_counts_as_failure(self) -> None:
        # The original's wrapper refuses a falsy result, the empty string included.
        token = cryptocode.encrypt("", ORIGINAL_SECRET)
        with pytest.raises(ApiKeyDecryptionError):
            _cipher().decrypt(token)

    def test_reads_a_ciphertext_made_by_the_original(self) -> None:
        # Written by the original back-end with its default SECRET_KEY.
        example = (
            "QQ/bGxsQm+1p*ZXPYv7sNAv0qHcB7H+9Ulg==*"
            "cgnIPnw9reWSChI8DlTIlw==*XSi1hGmIMxaCz9dijlFkJg=="
        )
        assert _cipher().decrypt(example) == "sk-secret"


class TestKeyRing:
    def test_parse_in_order(self) -> None:
        ring = parse_key_ring(" k2:new secret , k1:old:with:colons,")
        assert list(ring) == ["k2", "k1"]
        assert ring["k1"] == "old:with:colons"

    @pytest.mark.parametrize("text", ["nocolon", "k1:", "bad id:x", "k1:a,k1:b"])
    def test_parse_refuses(self, text: str) -> None:
        with pytest.raises(ValueError):
            parse_key_ring(text)

    def test_from_key_ring(self) -> None:
        cipher = ApiKeyCipher.from_key_ring("k9:s", legacy_secrets=[ORIGINAL_SECRET])
        assert cipher.current_key_id == "k9"
        assert cipher.decrypt(cipher.encrypt("x")) == "x"

    def test_needs_a_key(self) -> None:
        with pytest.raises(ValueError):
            ApiKeyCipher({})
