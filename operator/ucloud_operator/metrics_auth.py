"""Secure metrics (--metrics-secure), as controller-runtime's (kubebuilder's `--metrics-secure`):
/metrics over TLS, and each caller's bearer token checked with a TokenReview (who is it?) and a
SubjectAccessReview (may it `get` the non-resource URL /metrics?). 401 without a token or with
one the API server does not authenticate, 403 when it may not, 503 (or 500) when the API server
cannot answer. Answers are cached for a minute per token, so a scrape costs no API call once its
token is known.

The certificate: tls.crt and tls.key of --metrics-cert-dir (a Secret of type kubernetes.io/tls,
say cert-manager's), read again when they change; without it, a self-signed one made at start,
as controller-runtime makes, which a scraper can only take unverified (insecureSkipVerify).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .kube import Forbidden, Refused, Transient
from .settings import CERT_FILES

logger = logging.getLogger(__name__)

TTL = 60.0  # seconds an allowed or forbidden token is remembered
UNAUTHENTICATED_TTL = 10.0  # seconds a token the API server does not authenticate is remembered
MAX_TOKENS = 4096  # tokens remembered at most (random tokens must not grow the cache for ever)
CERT_CHECK_SECONDS = 10.0  # how often --metrics-cert-dir's files are looked at for a change
SELF_SIGNED_DAYS = 365  # made again at every start


class ReviewApi(Protocol):
    """The two reviews (`kube.KubeApi`); unit tests pass a fake. Both raise `kube.Transient`
    or `kube.Refused` when the API server does not answer them."""

    async def token_review(self, token: str) -> dict[str, Any]: ...
    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Decision:
    """What a caller gets: `status` 200 (allowed), 401, 403, 500 or 503; `user` as the API
    server named it (empty when unknown); `reason` for the log."""

    status: int
    user: str = ""
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == 200

    @property
    def answer(self) -> str:
        """The body of a refusal: nothing the caller did not know already."""
        if self.status == 401:
            return "Unauthorized"
        if self.status == 403:
            return f"Forbidden: {self.user} may not get /metrics"
        return "Could not check the bearer token with the API server; try again"


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for anything else."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authorizer:
    """TokenReview, then SubjectAccessReview, each answer remembered for a while per token
    (only a digest of it is kept)."""

    def __init__(
        self,
        api: ReviewApi,
        *,
        ttl: float = TTL,
        unauthenticated_ttl: float = UNAUTHENTICATED_TTL,
        max_tokens: int = MAX_TOKENS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._ttl = ttl
        self._unauthenticated_ttl = unauthenticated_ttl
        self._max_tokens = max_tokens
        self._clock = clock
        self._cache: OrderedDict[tuple[bytes, str, str], tuple[float, Decision]] = OrderedDict()

    async def check(self, token: str | None, path: str, verb: str = "get") -> Decision:
        if not token:
            return Decision(401, reason="no bearer token")
        key = (hashlib.sha256(token.encode()).digest(), path, verb)
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            decision = await self._review(token, path, verb)
        except (Transient, Refused) as error:
            return self._failed(error, path)
        ttl = self._unauthenticated_ttl if decision.status == 401 else self._ttl
        self._cache.pop(key, None)
        self._cache[key] = (now + ttl, decision)
        while len(self._cache) > self._max_tokens:
            self._cache.popitem(last=False)  # the oldest
        if decision.allowed:
            logger.debug("metrics: %s may %s %s", decision.user, verb, path)
        else:
            logger.info(
                "metrics: %s refused to %s (%d): %s",
                f"{verb} {path}",
                decision.user or "a caller",
                decision.status,
                decision.reason,
            )
        return decision

    async def _review(self, token: str, path: str, verb: str) -> Decision:
        review = await self._api.token_review(token)
        user = review.get("user") or {}
        if not review.get("authenticated") or not user.get("username"):
            return Decision(401, reason=f"token not authenticated: {review.get('error') or '-'}")
        name = str(user["username"])
        spec: dict[str, Any] = {
            "user": name,
            "groups": list(user.get("groups") or []),
            "nonResourceAttributes": {"path": path, "verb": verb},
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        access = await self._api.subject_access_review(spec)
        if access.get("allowed") and not access.get("denied"):
            return Decision(200, name)
        why = access.get("reason") or access.get("evaluationError") or "no rule allows it"
        return Decision(403, name, f"not allowed: {why}")

    @staticmethod
    def _failed(error: Exception, path: str) -> Decision:
        """The API server did not answer a review: 503, or 500 when it refused the operator
        (a misconfiguration that retrying does not mend). Said in the log, never the token."""
        if isinstance(error, Transient):
            logger.warning("metrics: cannot check a caller of %s, API server: %s", path, error)
            return Decision(503, reason=str(error))
        hint = (
            ": grant the operator create on tokenreviews (authentication.k8s.io) and "
            "subjectaccessreviews (authorization.k8s.io), as the chart does with metrics.secure"
            if isinstance(error, Forbidden)
            else ""
        )
        logger.error("metrics: cannot check a caller of %s, refused: %s%s", path, error, hint)
        return Decision(500, reason=str(error))


def _stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is replaced or rewritten (a Secret volume swaps a symlink)."""
    stats = [os.stat(path) for path in paths]
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


class ServingCert:
    """The TLS context of the metrics server: --metrics-cert-dir's files, or a self-signed
    certificate. `ssl` loads certificates from files only: the self-signed one goes through a
    private temporary folder, removed once read."""

    def __init__(self, directory: str = "") -> None:
        self.directory = directory
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp: tuple[tuple[int, int, int], ...] = ()
        if directory:
            self._paths = tuple(os.path.join(directory, name) for name in CERT_FILES)
            self._stamp = _stamp(self._paths)
            self.context.load_cert_chain(*self._paths)
        else:
            self._paths = ()
            cert, key = self_signed(serving_names())
            with tempfile.TemporaryDirectory(prefix="ucloud-metrics-") as folder:
                paths = tuple(os.path.join(folder, name) for name in CERT_FILES)
                for path, pem in zip(paths, (cert, key), strict=True):
                    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as file:
                        file.write(pem)
                self.context.load_cert_chain(*paths)

    @property
    def origin(self) -> str:
        return f"from {self.directory}" if self.directory else "self-signed"

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; a pair that does not load (half written, say)
        is said once and the certificate in use kept. True when a new one is in use."""
        if not self._paths:
            return False
        try:
            stamp = _stamp(self._paths)
        except OSError as error:
            logger.warning("metrics: cannot read the serving certificate: %s", error)
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.context.load_cert_chain(*self._paths)
        except (OSError, ssl.SSLError) as error:
            logger.warning("metrics: kept the certificate in use, %s: %s", self.directory, error)
            return False
        logger.info("metrics: serving the new certificate of %s", self.directory)
        return True

    async def watch(self, interval: float = CERT_CHECK_SECONDS) -> None:
        """Reload the files when they change (cert-manager renews them), until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


def serving_names() -> tuple[list[str], list[str]]:
    """The DNS names and addresses of a self-signed certificate: this host (the pod), and the
    loopback; not the Service's name, which the operator does not know."""
    names = ["localhost"]
    hostname = socket.gethostname()
    if hostname and hostname not in names:
        names.append(hostname)
    return names, ["127.0.0.1", "::1"]


def self_signed(names: tuple[list[str], list[str]]) -> tuple[bytes, bytes]:
    """A self-signed serving certificate (ECDSA P-256) and its key, PEM; `names`: DNS names
    and IP addresses it is for. `cryptography` is imported only here: without
    --metrics-secure, or with --metrics-cert-dir, it is never loaded."""
    from cryptography import x509  # noqa: PLC0415 - only a self-signed certificate needs it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    dns, addresses = names
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ucloud-operator@{dns[-1]}")])
    now = datetime.now(UTC)
    alternative = [x509.DNSName(n) for n in dns] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in addresses
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # clocks a little behind ours
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class SecureMetrics:
    """What the metrics server needs for --metrics-secure."""

    cert: ServingCert
    authorizer: Authorizer
