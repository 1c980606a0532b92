"""Auth against a real JWKS served by a local identity provider, with keys the tests generate."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shoal.auth import Authenticator, AuthSettings, RedactTokens, bearer_token, websocket_token
from shoal.errors import BackendError, Unauthorized
from shoal.settings import Settings
from tests.servers import IdentityProvider, identity_provider


def make_authenticator(
    jwks_url: str | None = None, *, api_keys: list[str] | None = None, admin_keys: list[str] | None = None, **auth: Any
) -> Authenticator:
    settings = Settings(
        _env_file=None, auth_jwks_url=jwks_url, api_keys=api_keys or [], admin_api_keys=admin_keys or []
    )
    options: dict[str, Any] = {"issuer": "https://idp.test", "audience": ["shoal"], "jwks_min_refetch_s": 0}
    options.update(auth)
    return Authenticator(settings, AuthSettings(_env_file=None, **options))


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    async with identity_provider() as provider:
        yield provider


async def reason(authenticator: Authenticator, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await authenticator.authenticate(token)
    return str(caught.value)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_valid_rs256_and_es256_tokens(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url)
    principal = await auth.authenticate(idp.token(sub="alice"))
    assert (principal.subject, principal.kind, principal.admin) == ("alice", "jwt", False)
    idp.rotate("ec-1", "ES256", keep=True)
    assert (await auth.authenticate(idp.token(kid="ec-1", sub="bob"))).subject == "bob"


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"exp": None}, "'exp'"),
        ({"sub": None}, "'sub'"),
    ],
)
async def test_bad_claims_are_rejected(idp: IdentityProvider, claims: dict[str, Any], expected: str) -> None:
    auth = make_authenticator(idp.jwks_url)
    assert expected in await reason(auth, idp.token(**claims))


async def test_bad_signature_is_rejected(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url)
    genuine = idp.token()
    forged_key = IdentityProvider()  # another private key, same kid
    forged_key.keys = {idp.current: forged_key.keys["rsa-1"]}
    forged = forged_key.token(kid=idp.current)
    assert "signature" in await reason(auth, forged)
    header, payload, signature = genuine.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["sub"] = "admin"
    assert "signature" in await reason(auth, f"{header}.{b64(json.dumps(tampered).encode())}.{signature}")


async def test_alg_none_is_rejected(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url)
    claims = {"iss": idp.issuer, "aud": "shoal", "sub": "alice", "exp": int(time.time()) + 60}
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': idp.current}).encode())}.{b64(json.dumps(claims).encode())}."
    assert "not accepted" in await reason(auth, unsigned)


async def test_hs256_key_confusion_is_rejected(idp: IdentityProvider) -> None:
    """The classic attack: HMAC-sign with the public key (which anyone can fetch) as the secret."""
    auth = make_authenticator(idp.jwks_url)
    public_pem = (
        idp.keys[idp.current][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": idp.issuer, "aud": "shoal", "sub": "alice", "exp": int(time.time()) + 60}
    header = {"alg": "HS256", "kid": idp.current}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert "not accepted" in await reason(auth, f"{signing_input}.{b64(mac)}")


async def test_key_rotation_refetches_on_unknown_kid(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url)
    await auth.authenticate(idp.token())
    assert idp.fetches == 1
    idp.rotate("rsa-2")
    assert (await auth.authenticate(idp.token(sub="carol"))).subject == "carol"
    assert idp.fetches == 2
    await auth.authenticate(idp.token(sub="carol"))
    assert idp.fetches == 2  # cached


async def test_unknown_kid_refetch_rate_is_bounded(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url, jwks_min_refetch_s=3600)
    await auth.authenticate(idp.token())
    stranger = IdentityProvider()
    stranger.rotate("made-up")
    for _ in range(20):
        assert "unknown signing key" in await reason(auth, stranger.token(kid="made-up"))
    assert idp.fetches == 1


async def test_discovery_url_gives_keys_and_issuer(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.discovery_url, issuer=None)
    assert (await auth.authenticate(idp.token(sub="dave"))).subject == "dave"
    assert "issuer" in await reason(auth, idp.token(iss="https://other.test"))


async def test_custom_user_and_admin_claims(idp: IdentityProvider) -> None:
    auth = make_authenticator(idp.jwks_url, user_claim="uid", admin_claim="roles")
    principal = await auth.authenticate(idp.token(uid="u-9", roles=["admin", "x"]))
    assert (principal.subject, principal.admin) == ("u-9", True)
    assert not (await auth.authenticate(idp.token(uid="u-9", roles=["x"]))).admin


async def test_unreachable_jwks_is_a_backend_error(idp: IdentityProvider) -> None:
    auth = make_authenticator("http://127.0.0.1:9/.well-known/jwks.json", jwks_timeout_s=1)
    with pytest.raises(BackendError):
        await auth.authenticate(idp.token())


async def test_api_keys_plain_user_bound_and_admin() -> None:
    auth = make_authenticator(api_keys=["svc-secret", "alice:alice-secret"], admin_keys=["root-secret"])
    service = await auth.authenticate("svc-secret")
    assert service.kind == "api_key" and not service.admin and not service.user_bound
    assert "svc-secret" not in service.subject
    alice = await auth.authenticate("alice-secret")
    assert (alice.subject, alice.admin) == ("alice", False)
    assert (await auth.authenticate("root-secret")).admin
    assert "invalid API key" in await reason(auth, "nope")
    assert "no JWKS" in await reason(auth, "a.b.c")


def test_token_extraction() -> None:
    assert bearer_token({b"authorization": b"Bearer abc"}) == "abc"
    assert bearer_token({b"x-api-key": b"k1"}) == "k1"
    assert bearer_token({b"authorization": b"Basic xyz"}) is None
    scope: dict[str, Any] = {"headers": [], "subprotocols": ["bearer", "tok"], "query_string": b""}
    assert websocket_token(scope) == ("tok", True)
    assert websocket_token({"headers": [], "query_string": b"k=3&token=q1"}) == ("q1", False)


def test_tokens_in_query_strings_are_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/ws?k=3&token=eyJsecret.abc.def"),
        None,
    )
    RedactTokens().filter(record)
    assert "eyJsecret" not in record.getMessage() and "token=***" in record.getMessage()


def test_hs256_cannot_even_be_built_with_pyjwt_from_a_pem() -> None:
    """Sanity: PyJWT itself refuses the confusion on encode, so the test above builds it by hand."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(jwt.InvalidKeyError):
        jwt.encode({"sub": "x"}, pem, algorithm="HS256")
