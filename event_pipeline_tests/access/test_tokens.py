"""The HMAC token form: shape, entropy source, authenticity checks, scan parsing."""

from __future__ import annotations

import base64
import re
import secrets
from urllib.parse import quote

import pytest

from event_pipeline.access import tokens
from event_pipeline.access.tokens import (
    MAC_BYTES,
    PUBLIC_ID_BYTES,
    PUBLIC_ID_LEN,
    TOKEN_LEN,
    TokenCodec,
    TokenKeyError,
    checkin_url,
    new_public_id,
    token_from_scan,
)

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec.from_secret(secrets.token_urlsafe(48))


def test_public_id_is_128_bits_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    real = secrets.token_bytes

    def spy(n: int) -> bytes:
        asked.append(n)
        return real(n)

    monkeypatch.setattr(tokens.secrets, "token_bytes", spy)
    public_id = new_public_id()
    assert asked == [PUBLIC_ID_BYTES] and PUBLIC_ID_BYTES * 8 >= 128
    assert len(base64.urlsafe_b64decode(public_id + "==")) == PUBLIC_ID_BYTES


def test_tokens_are_url_safe_fixed_length_and_distinct(codec: TokenCodec) -> None:
    ids = {new_public_id() for _ in range(50_000)}
    assert len(ids) == 50_000
    for public_id in list(ids)[:1000]:
        token = codec.token_for(public_id)
        assert len(public_id) == PUBLIC_ID_LEN and len(token) == TOKEN_LEN
        assert URL_SAFE.match(token) and quote(token, safe="") == token
        assert token.startswith(public_id)
        assert len(base64.urlsafe_b64decode(token[PUBLIC_ID_LEN:] + "==")) == MAC_BYTES


def test_only_authentic_tokens_yield_their_public_id(codec: TokenCodec) -> None:
    public_id = new_public_id()
    token = codec.token_for(public_id)
    assert codec.public_id_of(token) == public_id
    other = TokenCodec.from_secret(secrets.token_urlsafe(48))
    assert other.public_id_of(token) is None, "another key must not accept it"
    for i in range(TOKEN_LEN):  # any single changed character, public half or MAC half
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert codec.public_id_of(flipped) is None, i
    assert codec.public_id_of(token[:-1]) is None
    assert codec.public_id_of(token + "A") is None
    assert codec.public_id_of(token[:-1] + "é") is None
    assert codec.public_id_of("") is None
    # A genuine public id with somebody else's MAC half (what a database leak would give you).
    assert codec.public_id_of(public_id + codec.token_for(new_public_id())[PUBLIC_ID_LEN:]) is None


def test_mac_is_compared_in_constant_time(codec: TokenCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = tokens.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    token = codec.token_for(new_public_id())
    assert codec.public_id_of(token) is not None
    assert len(calls) == 1 and calls[0][1] == token[PUBLIC_ID_LEN:]


def test_the_key_is_never_in_a_repr() -> None:
    secret = secrets.token_urlsafe(48)
    codec = TokenCodec.from_secret(secret)
    assert codec.key.hex() not in repr(codec) and repr(codec.key) not in repr(codec)
    assert secret not in repr(codec)


def test_weak_keys_are_refused() -> None:
    with pytest.raises(TokenKeyError, match="EVENT_PIPELINE_TOKEN_KEY"):
        TokenCodec.from_secret("short")
    with pytest.raises(TokenKeyError):
        TokenCodec.from_secret("")


@pytest.mark.parametrize(
    "scanned",
    [
        "{t}",
        "  {t}\n",
        "https://checkin.example.com/t/{t}",
        "https://checkin.example.com/t/{t}/",
        "https://checkin.example.com/t/{t}?utm_source=mail",
        "https://checkin.example.com/t/{t}#ticket",
    ],
)
def test_scans_of_urls_and_bare_tokens_give_the_token(codec: TokenCodec, scanned: str) -> None:
    token = codec.token_for(new_public_id())
    assert token_from_scan(scanned.format(t=token)) == token


def test_checkin_url_joins_base_and_token(codec: TokenCodec) -> None:
    token = codec.token_for(new_public_id())
    assert checkin_url("https://x.example/t/", token) == f"https://x.example/t/{token}"
    assert checkin_url("https://x.example/t", token) == f"https://x.example/t/{token}"
