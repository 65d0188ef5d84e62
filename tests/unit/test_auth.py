"""The token matrix: every way a token or a header can be wrong is a 401, and the rest pass."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import attrs
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from entrypoints.config import Settings
from entrypoints.http.auth import (
    Authenticator,
    AuthError,
    GatewayHeaders,
    Identity,
    OriginRefused,
    mint_token,
)

SECRET = "a-long-test-secret-for-hs256-0123456789"  # noqa: S105 - a test key
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def hs(payload: dict[str, Any], key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, key, algorithm="HS256", headers=headers or None)


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(payload)}."


def hs_with_public_key(payload: dict[str, Any], public_pem: str) -> str:
    """The classic confusion attack: HMAC-sign with the server's public key as the secret."""
    head = f"{_part({'alg': 'HS256', 'typ': 'JWT'})}.{_part(payload)}"
    mac = hmac.new(public_pem.encode(), head.encode(), hashlib.sha256).digest()
    return f"{head}.{_part(mac)}"


def auth(**settings: Any) -> Authenticator:
    return Authenticator(attrs.evolve(Settings(), **settings), secret="")


def bearer(token: str) -> str:
    return f"Bearer {token}"


HS = auth(jwt_secret=SECRET)

REJECTED: dict[str, Callable[[], tuple[Authenticator, str]]] = {
    "alg none": lambda: (HS, unsigned(claims())),
    "bad signature": lambda: (HS, hs(claims(), key="another-secret-of-the-same-length-000")),
    "no exp": lambda: (HS, hs({"sub": "alice"})),
    "expired": lambda: (HS, hs(claims(exp=int(time.time()) - 3600))),
    "not yet valid": lambda: (HS, hs(claims(nbf=int(time.time()) + 3600))),
    "no sub": lambda: (HS, hs({"exp": int(time.time()) + 60})),
    "empty sub": lambda: (HS, hs(claims(sub=""))),
    "numeric sub": lambda: (HS, hs(claims(sub=42))),
    "huge sub": lambda: (HS, hs(claims(sub="a" * 500))),
    "sub with a NUL": lambda: (HS, hs(claims(sub="al\x00ice"))),
    "sub with a line break": lambda: (HS, hs(claims(sub="alice\r\nadmin"))),
    "sub with an escape sequence": lambda: (HS, hs(claims(sub="\x1b[2Jalice"))),
    "sub with a bidirectional override": lambda: (HS, hs(claims(sub="alice\u202e"))),
    "exp past the year 9999": lambda: (HS, hs(claims(exp=10**30))),
    "exp beyond a float": lambda: (HS, hs(claims(exp=10**400))),
    "nbf beyond a float, before 1970": lambda: (HS, hs(claims(nbf=-(10**400)))),
    "malformed": lambda: (HS, "abc.def.ghi"),
    "garbage": lambda: (HS, "%%%"),
    "oversized": lambda: (HS, hs(claims(pad="x" * 10_000))),
    "unknown kid": lambda: (HS, hs(claims(), kid="key-2")),
    "wrong issuer": lambda: (
        auth(jwt_secret=SECRET, jwt_issuer="https://id.example"),
        hs(claims(iss="https://evil.example")),
    ),
    "missing issuer": lambda: (
        auth(jwt_secret=SECRET, jwt_issuer="https://id.example"),
        hs(claims()),
    ),
    "wrong audience": lambda: (
        auth(jwt_secret=SECRET, jwt_audience="imagecore"),
        hs(claims(aud="billing")),
    ),
    "HS token against an RSA key (algorithm confusion)": lambda: (
        auth(jwt_public_key=pem(RSA)),
        hs_with_public_key(claims(), pem(RSA)),
    ),
    "RS token against an HS secret": lambda: (HS, jwt.encode(claims(), RSA, algorithm="RS256")),
    "RS token signed by another key": lambda: (
        auth(jwt_public_key=pem(RSA)),
        jwt.encode(
            claims(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
        ),
    ),
    "ES token against an RSA key": lambda: (
        auth(jwt_public_key=pem(RSA)),
        jwt.encode(claims(), EC, algorithm="ES256"),
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_a_bad_token_is_rejected_with_a_clear_reason(case: str) -> None:
    authenticator, token = REJECTED[case]()
    with pytest.raises(AuthError) as raised:
        authenticator.identify(bearer(token), None, "127.0.0.1")
    message = raised.value.message
    assert message.startswith(("the token", "use 'Authorization"))
    assert SECRET not in message
    assert "Traceback" not in message


ACCEPTED: dict[str, Callable[[], tuple[Authenticator, str]]] = {
    "HS256": lambda: (HS, hs(claims())),
    "RS256": lambda: (auth(jwt_public_key=pem(RSA)), jwt.encode(claims(), RSA, algorithm="RS256")),
    "ES256": lambda: (auth(jwt_public_key=pem(EC)), jwt.encode(claims(), EC, algorithm="ES256")),
    "PEM with escaped newlines": lambda: (
        auth(jwt_public_key=pem(RSA).replace("\n", "\\n")),
        jwt.encode(claims(), RSA, algorithm="RS256"),
    ),
    "expired within the leeway": lambda: (HS, hs(claims(exp=int(time.time()) - 10))),
    "issuer and audience as configured": lambda: (
        auth(jwt_secret=SECRET, jwt_issuer="https://id.example", jwt_audience="imagecore"),
        hs(claims(iss="https://id.example", aud="imagecore")),
    ),
    "the configured kid": lambda: (
        auth(jwt_secret=SECRET, jwt_key_id="k1"),
        hs(claims(), kid="k1"),
    ),
    "minted by imagecore token": lambda: (HS, mint_token(SECRET, "alice")),
    "valid to the last second of the year 9999": lambda: (HS, hs(claims(exp=253_402_300_799))),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_a_good_token_names_its_user(case: str) -> None:
    authenticator, token = ACCEPTED[case]()
    assert authenticator.identify(bearer(token), None, "10.0.0.9") == Identity("alice")


def test_an_identity_knows_when_its_token_stops_being_accepted() -> None:
    exp = int(time.time()) + 600
    identity = auth(jwt_secret=SECRET, jwt_leeway_seconds=5).identify(
        bearer(hs(claims(exp=exp))), None, None
    )
    assert identity.expires_at == exp + 5
    gateway = auth(jwt_secret=SECRET, trust_gateway_headers=True, trusted_proxies=("10.0.0.1",))
    assert gateway.identify(None, "bob", "10.0.0.1").expires_at is None


def test_the_admin_claim_or_role_opens_admin_routes() -> None:
    assert HS.identify(bearer(mint_token(SECRET, "root", admin=True)), None, None).is_admin
    assert HS.identify(bearer(hs(claims(roles=["admin"]))), None, None).is_admin
    assert not HS.identify(bearer(hs(claims(admin="yes"))), None, None).is_admin


def test_the_gateway_header_needs_trust_and_a_trusted_proxy() -> None:
    gateway = auth(jwt_secret=SECRET, trust_gateway_headers=True, trusted_proxies=("10.0.0.1",))
    assert gateway.identify(None, "bob", "10.0.0.1") == Identity("bob")
    with pytest.raises(AuthError):
        gateway.identify(None, "bob", "10.0.0.66")
    with pytest.raises(AuthError):
        HS.identify(None, "bob", "127.0.0.1")
    with pytest.raises(AuthError, match="not a valid user id"):
        gateway.identify(None, "bob\nadmin", "10.0.0.1")


def test_a_token_and_a_different_gateway_user_are_rejected() -> None:
    gateway = auth(jwt_secret=SECRET, trust_gateway_headers=True, trusted_proxies=("10.0.0.1",))
    with pytest.raises(AuthError, match="different users"):
        gateway.identify(bearer(hs(claims())), "mallory", "10.0.0.1")
    assert gateway.identify(bearer(hs(claims())), "alice", "10.0.0.1") == Identity("alice")


GATEWAY = auth(jwt_secret=SECRET, trust_gateway_headers=True, trusted_proxies=("10.0.0.1",))


def test_the_old_gateway_authenticates_with_x_authenticated_true() -> None:
    said = GatewayHeaders(authenticated="true", origin="https://app.example")
    identity = GATEWAY.identify(None, "bob", "10.0.0.1", said)
    assert (identity, identity.origin) == (Identity("bob"), "https://app.example")


@pytest.mark.parametrize("value", ["false", "False", "", "yes"])
def test_the_old_gateway_saying_not_authenticated_beside_a_user_is_a_401(value: str) -> None:
    with pytest.raises(AuthError, match="not authenticated"):
        GATEWAY.identify(None, "bob", "10.0.0.1", GatewayHeaders(authenticated=value))


def test_not_authenticated_without_a_user_leaves_the_request_to_its_token() -> None:
    said = GatewayHeaders(authenticated="false")
    assert GATEWAY.identify(bearer(hs(claims())), None, "10.0.0.1", said) == Identity("alice")
    with pytest.raises(AuthError, match="sign in"):
        GATEWAY.identify(None, None, "10.0.0.1", said)


def test_the_gateway_marks_administrators_with_a_role_header() -> None:
    admin = GATEWAY.identify(
        None, "root", "10.0.0.1", GatewayHeaders(authenticated="true", roles="ops, admin")
    )
    assert admin.is_admin
    user = GATEWAY.identify(None, "bob", "10.0.0.1", GatewayHeaders(roles="user,administrator"))
    assert not user.is_admin


def test_gateway_headers_from_an_untrusted_address_count_for_nothing() -> None:
    said = GatewayHeaders(authenticated="true", roles="admin")
    with pytest.raises(AuthError, match="sign in"):
        GATEWAY.identify(None, "bob", "10.0.0.66", said)
    token = bearer(hs(claims()))
    assert not GATEWAY.identify(token, "root", "10.0.0.66", said).is_admin


def test_gateway_origins_when_listed_refuse_others_with_a_403_error() -> None:
    listed = auth(
        trust_gateway_headers=True,
        trusted_proxies=("10.0.0.1",),
        gateway_origins=("https://app.example",),
    )
    good = GatewayHeaders(authenticated="true", origin="https://app.example/")
    assert listed.identify(None, "bob", "10.0.0.1", good) == Identity("bob")
    bad = GatewayHeaders(authenticated="true", origin="https://evil.example")
    with pytest.raises(OriginRefused):
        listed.identify(None, "bob", "10.0.0.1", bad)
    with pytest.raises(AuthError, match="not a valid origin"):
        GATEWAY.identify(None, "bob", "10.0.0.1", GatewayHeaders(origin="a\nb"))


def test_a_public_key_that_is_not_pem_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="PEM"):
        auth(jwt_public_key="not a key")


def test_imagecore_tokens_carry_the_configured_key_id() -> None:
    with_kid = auth(jwt_secret=SECRET, jwt_key_id="k1")
    token = mint_token(SECRET, "alice", key_id="k1")
    assert with_kid.identify(bearer(token), None, None) == Identity("alice")
    with pytest.raises(AuthError):
        with_kid.identify(bearer(mint_token(SECRET, "alice")), None, None)


def test_a_token_verified_before_still_expires_and_still_waits_for_nbf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = auth(jwt_secret=SECRET, jwt_leeway_seconds=0)
    start = time.time()
    clock = {"now": start}

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Clock:
            return cls.fromtimestamp(clock["now"], tz)

    # Both our memory of verified tokens and PyJWT's own checks read the moved clock.
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    monkeypatch.setattr(jwt.api_jwt, "datetime", Clock)
    token = bearer(hs(claims(exp=int(start) + 60, nbf=int(start) + 30)))
    with pytest.raises(AuthError, match="not valid yet"):
        checker.identify(token, None, None)
    clock["now"] = start + 31
    assert checker.identify(token, None, None) == Identity("alice")
    assert checker.identify(token, None, None) == Identity("alice")  # remembered
    clock["now"] = start + 61
    with pytest.raises(AuthError, match="expired"):
        checker.identify(token, None, None)
