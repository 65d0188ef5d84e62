"""Who is calling: a verified JWT, or the trusted gateway's headers.

Tokens are HS256 (``JWT_SECRET``) or RS256/ES256 (``JWT_PUBLIC_KEY``); the
one accepted algorithm is fixed by the key's type, so ``alg: none`` and
algorithm confusion (an HS token signed with the public key) never verify.
``exp`` and ``sub`` are required, ``nbf`` is honoured, ``iss``/``aud`` are
checked when configured, and a ``kid`` must be the configured ``JWT_KEY_ID``.
A user id (``sub``, or the gateway's ``X-User-ID``) is 1 to 128 printable
characters: no control characters reach a log line, a key or an event. An
``exp`` or ``nbf`` past the year 9999 is refused, not clamped: no identity
provider issues one, and no time of ours could hold it.

With no key configured, a secret is generated once in the data folder, so
``imagecore serve`` is safe with zero configuration and ``imagecore token``
mints tokens for it.

The old service's gateway (its shared middleware) sends ``x-authenticated``
(``true``/``false``), ``x-user-id`` and ``x-user-origin``; they are read only
with ``TRUST_GATEWAY_HEADERS=true`` and only from ``TRUSTED_PROXIES``. Only
``x-authenticated: true`` lets ``x-user-id`` name the caller, as there; a
``false`` beside a user id is a 401, and a ``false`` alone leaves the request
to its own token. An absent ``x-authenticated`` keeps our earlier gateway
form (``X-User-ID`` alone). ``x-user-roles`` (comma-separated; ``admin``
opens the admin routes) is ours. ``x-user-origin`` was checked by that
gateway against its allowed origins; ``GATEWAY_ORIGINS`` checks it here too
(403 for another), and without it the origin is only kept for the logs.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from entrypoints.config import Settings

__all__ = [
    "AuthError",
    "Authenticator",
    "GatewayHeaders",
    "Identity",
    "OriginRefused",
    "load_or_create_secret",
    "mint_token",
    "stored_secret",
]

MAX_TOKEN_LENGTH = 8192
_MAX_USER_ID = 128
_MAX_ORIGIN = 256
#: The last second of the year 9999 (UTC): the latest ``exp`` or ``nbf`` accepted.
_LATEST = 253_402_300_799
_REMEMBERED_TOKENS = 1024
_SECRET_FILE = "jwt-secret"  # noqa: S105 - a file name, not a secret


class AuthError(Exception):
    """The request's credentials are missing or not acceptable (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OriginRefused(AuthError):
    """The gateway names an origin that ``GATEWAY_ORIGINS`` does not list (HTTP 403)."""


@attrs.frozen
class GatewayHeaders:
    """What the trusted gateway says about the caller (each None when not sent)."""

    user_id: str | None = None
    authenticated: str | None = None
    roles: str | None = None
    origin: str | None = None


@attrs.frozen
class Identity:
    """The caller: a user id and whether it may use the admin routes."""

    user_id: str
    is_admin: bool = False
    #: When the credentials stop being accepted (``time.time()`` seconds: the token's
    #: ``exp`` plus the leeway); None for the gateway's header. Not part of who it is.
    expires_at: float | None = attrs.field(default=None, eq=False)
    #: The gateway's ``x-user-origin``, for the logs. Not part of who it is either.
    origin: str | None = attrs.field(default=None, eq=False)


def _is_user_id(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_USER_ID and value.isprintable()


def _moment(claims: dict[str, Any], name: str) -> float | None:
    """The claim ``name`` as seconds, None when absent; `AuthError` beyond +-`_LATEST`.

    PyJWT has read it as a whole number already, which may be too large for a float.
    """
    if (value := claims.get(name)) is None:
        return None
    try:
        moment = float(value)
    except (TypeError, ValueError, OverflowError):
        moment = float("inf")
    if not -_LATEST <= moment <= _LATEST:
        raise AuthError(f"the token's {name} is out of range")
    return moment


def stored_secret(data_dir: Path, name: str = _SECRET_FILE) -> str | None:
    """The secret kept in ``data_dir/name``, or None when none was made there yet."""
    path = data_dir / name
    return path.read_text().strip() if path.is_file() else None


def load_or_create_secret(data_dir: Path, name: str = _SECRET_FILE) -> str:
    """The secret kept in ``data_dir/name``, created (mode 0600) on first use."""
    path = data_dir / name
    if (secret := stored_secret(data_dir, name)) is not None:
        return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    if path.exists():  # another process made it first: theirs wins
        tmp.unlink()
        return path.read_text().strip()
    tmp.replace(path)
    return secret


def mint_token(  # noqa: PLR0913 - keyword options of one token
    secret: str,
    user_id: str,
    *,
    admin: bool = False,
    ttl_seconds: int = 24 * 3600,
    issuer: str = "",
    audience: str = "",
    key_id: str = "",
) -> str:
    """An HS256 token for ``user_id``, valid for ``ttl_seconds`` (with ``kid`` if given)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
    if admin:
        claims["admin"] = True
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    headers = {"kid": key_id} if key_id else None
    return jwt.encode(claims, secret, algorithm="HS256", headers=headers)


def _public_key(pem: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(pem.replace("\\n", "\n").encode())
    except ValueError:
        raise ValueError("JWT_PUBLIC_KEY is not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise ValueError("JWT_PUBLIC_KEY must be an RSA or EC (P-256) public key")  # noqa: TRY004
    return key


class Authenticator:
    """Turns a request's headers into an `Identity` or raises `AuthError`."""

    def __init__(self, settings: Settings, secret: str) -> None:
        if settings.jwt_public_key:
            public = _public_key(settings.jwt_public_key)
            self._key: str | rsa.RSAPublicKey | ec.EllipticCurvePublicKey = public
            is_ec = isinstance(public, ec.EllipticCurvePublicKey)
            self._algorithms = ["ES256" if is_ec else "RS256"]
        else:
            self._key = settings.jwt_secret or secret
            self._algorithms = ["HS256"]
        self._kid = settings.jwt_key_id or None
        self._issuer = settings.jwt_issuer or None
        self._audience = settings.jwt_audience or None
        self._leeway = settings.jwt_leeway_seconds
        self._trust_gateway = settings.trust_gateway_headers
        self._proxies = frozenset(settings.trusted_proxies)
        self._origins = frozenset(o.rstrip("/") for o in settings.gateway_origins)
        # Tokens verified lately, with the window they are valid in: a client sends
        # the same token with every request, and a signature check costs more than
        # the rest of a small request's routing.
        self._verified: OrderedDict[str, tuple[Identity, float, float]] = OrderedDict()

    def identify(
        self,
        authorization: str | None,
        user_header: str | None,
        peer: str | None,
        gateway: GatewayHeaders | None = None,
    ) -> Identity:
        """Identify the caller from ``Authorization``, the gateway's headers and the peer.

        ``user_header`` is ``X-User-ID``; ``gateway`` the rest of the gateway's headers.
        """
        said = attrs.evolve(gateway or GatewayHeaders(), user_id=user_header)
        gateway_identity = self._from_gateway(said, peer)
        if authorization:
            identity = self._from_token(authorization)
            if gateway_identity is not None and gateway_identity.user_id != identity.user_id:
                raise AuthError("the token and the X-User-ID header name different users")
            return identity
        if gateway_identity is not None:
            return gateway_identity
        raise AuthError("sign in: send 'Authorization: Bearer <token>'")

    def _from_gateway(self, said: GatewayHeaders, peer: str | None) -> Identity | None:
        """Who the trusted gateway says calls; None when it says nobody (or is not trusted)."""
        if not self._trust_gateway or peer not in self._proxies:
            return None
        origin = said.origin.strip() if said.origin else None
        if origin is not None and not (len(origin) <= _MAX_ORIGIN and origin.isprintable()):
            raise AuthError("the x-user-origin header is not a valid origin")
        if self._origins and origin is not None and origin.rstrip("/") not in self._origins:
            raise OriginRefused(f"requests from {origin[:100]!r} are not accepted here")
        authenticated = (said.authenticated or "").strip().lower()
        if said.authenticated is not None and authenticated != "true":
            if said.user_id is not None:
                raise AuthError("the gateway says this request is not authenticated")
            return None
        if said.user_id is None:
            return None
        user = said.user_id.strip()
        if not _is_user_id(user):
            raise AuthError("the X-User-ID header is not a valid user id")
        roles = {r.strip().lower() for r in (said.roles or "").split(",")}
        return Identity(user, is_admin="admin" in roles, origin=origin)

    def _from_token(self, authorization: str) -> Identity:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("use 'Authorization: Bearer <token>'")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("the token is too long")
        now = time.time()
        if (known := self._verified.get(token)) is not None:
            identity, valid_from, valid_until = known
            if valid_from <= now < valid_until:
                return identity
            del self._verified[token]  # expired (or not yet valid): verified again below
        identity, valid_from, valid_until = self._verify(token, now)
        self._verified[token] = (identity, valid_from, valid_until)
        if len(self._verified) > _REMEMBERED_TOKENS:
            self._verified.popitem(last=False)
        return identity

    def _verify(self, token: str, now: float) -> tuple[Identity, float, float]:
        """The token's identity and the window it is valid in (leeway included)."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self._kid:
                raise AuthError("the token's key id is not one we know")
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.InvalidTokenError:
            raise AuthError("the token is not valid") from None
        subject = claims.get("sub")
        if not _is_user_id(subject):
            raise AuthError("the token names no valid user")
        valid_until = (_moment(claims, "exp") or now) + self._leeway  # exp is required
        valid_from = (_moment(claims, "nbf") or now) - self._leeway
        roles = claims.get("roles")
        admin = claims.get("admin") is True or (isinstance(roles, list) and "admin" in roles)
        identity = Identity(str(subject), is_admin=admin, expires_at=valid_until)
        return identity, valid_from, valid_until
