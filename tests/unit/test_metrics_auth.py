"""Secure metrics (--metrics-secure, issue 24): the token check (TokenReview, then
SubjectAccessReview, cached), the HTTPS server and its certificate, the two reviews on the wire,
the flags, and the chart's `metrics.secure`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes import client

from tests.support.operator import free_port
from ucloud_operator import settings
from ucloud_operator.http import Check, Server
from ucloud_operator.kube import Forbidden, KubeApi, Refused, Transient
from ucloud_operator.metrics_auth import (
    Authorizer,
    Decision,
    SecureMetrics,
    ServingCert,
    bearer_token,
    self_signed,
)

from .charts import CHART, NAMESPACE, RELEASE, ROOT, Render, helm_template, kinds, named, one

LOGGER = "ucloud_operator.metrics_auth"
READER = "system:serviceaccount:monitoring:prometheus"
STRANGER = "system:serviceaccount:default:nobody"
USERS = {
    "reader-token": {
        "username": READER,
        "uid": "u-1",
        "groups": ["system:serviceaccounts", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
    },
    "stranger-token": {"username": STRANGER, "groups": ["system:authenticated"]},
}


class FakeReviews:
    """The API server's two reviews: the tokens of USERS authenticate, READER may get /metrics.
    `error`: what both raise instead of answering."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any]] = []

    async def token_review(self, token: str) -> dict[str, Any]:
        self.calls.append(("TokenReview", token))
        if self.error is not None:
            raise self.error
        user = USERS.get(token)
        if user is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        return {"authenticated": True, "user": user}

    async def subject_access_review(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("SubjectAccessReview", spec))
        if spec["user"] == READER and spec["nonResourceAttributes"]["path"] == "/metrics":
            return {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding "r"'}
        return {"allowed": False}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the check


def test_the_bearer_token_of_an_authorization_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for header in (None, "", "Bearer", "Bearer  ", "Basic abc", "abc"):
        assert bearer_token(header) is None, header


async def test_a_token_allowed_to_get_metrics_is_allowed() -> None:
    api = FakeReviews()
    decision = await Authorizer(api).check("reader-token", "/metrics", "get")
    assert decision == Decision(200, READER)
    assert api.calls == [
        ("TokenReview", "reader-token"),
        (
            "SubjectAccessReview",
            {
                "user": READER,
                "uid": "u-1",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
                "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
            },
        ),
    ]


async def test_no_token_is_401_without_asking_the_api_server() -> None:
    api = FakeReviews()
    for token in (None, ""):
        decision = await Authorizer(api).check(token, "/metrics")
        assert decision.status == 401 and decision.answer == "Unauthorized"
    assert api.calls == []


async def test_a_token_the_api_server_does_not_authenticate_is_401() -> None:
    api = FakeReviews()
    decision = await Authorizer(api).check("forged", "/metrics")
    assert decision.status == 401
    assert "invalid bearer token" in decision.reason
    assert [kind for kind, _ in api.calls] == ["TokenReview"]  # no access review for nobody


async def test_a_user_not_allowed_is_403_naming_the_user() -> None:
    decision = await Authorizer(FakeReviews()).check("stranger-token", "/metrics")
    assert decision.status == 403 and decision.user == STRANGER
    assert decision.answer == f"Forbidden: {STRANGER} may not get /metrics"
    assert "no rule allows it" in decision.reason


async def test_a_cached_answer_asks_the_api_server_nothing_until_it_expires() -> None:
    api, clock = FakeReviews(), Clock()
    authorizer = Authorizer(api, ttl=60, unauthenticated_ttl=10, clock=clock)
    for token in ("reader-token", "stranger-token", "forged"):
        await authorizer.check(token, "/metrics")
    asked = len(api.calls)
    assert asked == 5  # 2 + 2 + 1
    clock.now += 9
    assert (await authorizer.check("reader-token", "/metrics")).status == 200
    assert (await authorizer.check("stranger-token", "/metrics")).status == 403
    assert (await authorizer.check("forged", "/metrics")).status == 401
    assert len(api.calls) == asked  # all three from the cache
    clock.now += 2  # 11 s: the unauthenticated token is asked about again
    await authorizer.check("forged", "/metrics")
    await authorizer.check("reader-token", "/metrics")
    assert api.calls[asked:] == [("TokenReview", "forged")]
    clock.now += 50  # 61 s
    await authorizer.check("reader-token", "/metrics")
    assert [kind for kind, _ in api.calls[asked + 1 :]] == ["TokenReview", "SubjectAccessReview"]


async def test_the_cache_holds_at_most_max_tokens_and_no_token_itself() -> None:
    api = FakeReviews()
    authorizer = Authorizer(api, max_tokens=2)
    for token in ("reader-token", "stranger-token", "forged"):
        await authorizer.check(token, "/metrics")
    assert len(authorizer._cache) == 2
    # A digest of each token, not the token.
    assert all(len(digest) == 32 for digest, _, _ in authorizer._cache)
    asked = len(api.calls)
    await authorizer.check("reader-token", "/metrics")  # the oldest, dropped: asked again
    assert len(api.calls) == asked + 2


async def test_an_api_server_that_cannot_answer_gives_503_logged_not_cached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeReviews(Transient("create tokenreviews: ClientConnectorError('refused')"))
    authorizer = Authorizer(api)
    with caplog.at_level(logging.INFO, LOGGER):
        decision = await authorizer.check("reader-token", "/metrics")
        assert decision.status == 503
        assert "try again" in decision.answer and "refused" not in decision.answer
        api.error = None
        assert (await authorizer.check("reader-token", "/metrics")).status == 200  # not cached
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warning.levelno == logging.WARNING
    assert "cannot check a caller of /metrics" in warning.getMessage()
    assert "ClientConnectorError('refused')" in warning.getMessage()
    assert "reader-token" not in caplog.text


async def test_an_operator_the_api_server_refuses_gives_500_and_says_what_to_grant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forbidden = Forbidden('tokenreviews.authentication.k8s.io is forbidden: User "op" cannot')
    with caplog.at_level(logging.INFO, LOGGER):
        decision = await Authorizer(FakeReviews(forbidden)).check("reader-token", "/metrics")
        assert decision.status == 500
        refused = await Authorizer(FakeReviews(Refused("400: bad"))).check("x", "/metrics")
        assert refused.status == 500
    first, second = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "is forbidden" in first.getMessage()
    assert "grant the operator create on tokenreviews" in first.getMessage()
    assert "metrics.secure" in first.getMessage()
    assert "grant" not in second.getMessage()  # not a permission: no hint
    assert "reader-token" not in caplog.text


async def test_refusals_are_logged_with_the_user_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    authorizer = Authorizer(FakeReviews())
    with caplog.at_level(logging.DEBUG, LOGGER):
        await authorizer.check("stranger-token", "/metrics")
        await authorizer.check("forged", "/metrics")
        await authorizer.check("stranger-token", "/metrics")  # cached: not logged again
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(refused) == 2
    assert STRANGER in refused[0] and "(403)" in refused[0]
    assert "(401)" in refused[1] and "invalid bearer token" in refused[1]
    assert "stranger-token" not in caplog.text and "forged" not in caplog.text


# ---------------------------------------------------------------- the server


def healthy() -> Check:
    return Check(True, {})


def client_context(cafile: Path | None = None) -> ssl.SSLContext:
    """Verifying against `cafile`, or not verifying (a self-signed certificate)."""
    if cafile is not None:
        return ssl.create_default_context(cafile=str(cafile))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Served:
    def __init__(self, server: Server, api: FakeReviews) -> None:
        self.server = server
        self.api = api
        self.metrics_port = free_port()
        self.health_port = free_port()

    @property
    def metrics_url(self) -> str:
        return f"https://127.0.0.1:{self.metrics_port}/metrics"

    async def get(
        self, url: str, token: str | None = None, context: ssl.SSLContext | bool | None = None
    ) -> tuple[int, dict[str, str], str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        ssl_arg: ssl.SSLContext | bool = client_context() if context is None else context
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers=headers, ssl=ssl_arg) as response,
        ):
            return response.status, dict(response.headers), await response.text()


async def serve(cert: ServingCert, api: FakeReviews | None = None) -> Served:
    api = api or FakeReviews()
    server = Server(healthy, healthy, secure=SecureMetrics(cert, Authorizer(api)))
    served = Served(server, api)
    await server.start(f"127.0.0.1:{served.metrics_port}", f"127.0.0.1:{served.health_port}")
    return served


@pytest.fixture
async def secure() -> AsyncIterator[Served]:
    served = await serve(ServingCert())
    yield served
    await served.server.stop()


async def test_metrics_over_https_for_an_allowed_token(secure: Served) -> None:
    status, headers, text = await secure.get(secure.metrics_url, "reader-token")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert "ucloud_api_requests_total" in text or "# HELP" in text


async def test_refusals_over_https(secure: Served) -> None:
    status, headers, text = await secure.get(secure.metrics_url)
    assert (status, text) == (401, "Unauthorized")
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, text = await secure.get(secure.metrics_url, "forged")
    assert status == 401
    status, headers, text = await secure.get(secure.metrics_url, "stranger-token")
    assert (status, text) == (403, f"Forbidden: {STRANGER} may not get /metrics")
    assert "WWW-Authenticate" not in headers
    # A second scrape with the same tokens: from the cache.
    asked = len(secure.api.calls)
    assert (await secure.get(secure.metrics_url, "stranger-token"))[0] == 403
    assert (await secure.get(secure.metrics_url, "reader-token"))[0] == 200
    assert (await secure.get(secure.metrics_url, "reader-token"))[0] == 200
    assert len(secure.api.calls) == asked + 2  # the reader's first scrape only


async def test_an_api_error_answers_503_over_https() -> None:
    served = await serve(ServingCert(), FakeReviews(Transient("create tokenreviews: timeout")))
    try:
        status, _, text = await served.get(served.metrics_url, "reader-token")
        assert status == 503 and "timeout" not in text
    finally:
        await served.server.stop()


async def test_the_probes_stay_plain_http_and_metrics_is_not(secure: Served) -> None:
    for path in ("/healthz", "/readyz"):
        status, _, _ = await secure.get(
            f"http://127.0.0.1:{secure.health_port}{path}", context=False
        )
        assert status == 200
    with pytest.raises(aiohttp.ClientError):
        await secure.get(f"http://127.0.0.1:{secure.metrics_port}/metrics", context=False)
    # Nor are the probes on the HTTPS port.
    assert (await secure.get(f"https://127.0.0.1:{secure.metrics_port}/healthz"))[0] == 404


async def test_secure_metrics_refuse_to_share_the_probes_address() -> None:
    server = Server(
        healthy, healthy, secure=SecureMetrics(ServingCert(), Authorizer(FakeReviews()))
    )
    with pytest.raises(ValueError, match="address of their own"):
        await server.start("127.0.0.1:1", "127.0.0.1:1")


async def test_without_secure_metrics_nothing_changes() -> None:
    server = Server(healthy, healthy)
    served = Served(server, FakeReviews())
    await server.start(f"127.0.0.1:{served.metrics_port}", f"127.0.0.1:{served.health_port}")
    try:
        url = f"http://127.0.0.1:{served.metrics_port}/metrics"
        status, _, text = await served.get(url, context=False)
        assert status == 200 and "# HELP" in text
    finally:
        await server.stop()


# ---------------------------------------------------------------- the certificate


def write_cert(folder: Path, names: tuple[list[str], list[str]]) -> bytes:
    """A self-signed pair in `folder` as a kubernetes.io/tls Secret has it; its DER."""
    cert, key = self_signed(names)
    (folder / "tls.crt").write_bytes(cert)
    (folder / "tls.key").write_bytes(key)
    return ssl.PEM_cert_to_DER_cert(cert.decode())


async def served_der(port: int) -> bytes:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context())
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()


async def test_a_certificate_folder_is_served_verifiably_and_read_again_when_renewed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = write_cert(tmp_path, (["localhost", "ucloud-operator-metrics.ops.svc"], ["127.0.0.1"]))
    cert = ServingCert(str(tmp_path))
    assert cert.origin == f"from {tmp_path}"
    served = await serve(cert)
    try:
        # Verified against the certificate itself, for the address in its names.
        verified = client_context(tmp_path / "tls.crt")
        status, _, _ = await served.get(served.metrics_url, "reader-token", context=verified)
        assert status == 200
        assert await served_der(served.metrics_port) == first
        assert not cert.reload_if_changed()  # unchanged
        # Renewed as a Secret volume renews it: new files in place of the old.
        renewed = tmp_path / "renewed"
        renewed.mkdir()
        second = write_cert(renewed, (["localhost"], ["127.0.0.1"]))
        for name in ("tls.crt", "tls.key"):
            os.replace(renewed / name, tmp_path / name)
        with caplog.at_level(logging.INFO, LOGGER):
            assert cert.reload_if_changed()
        assert "serving the new certificate" in caplog.text
        assert await served_der(served.metrics_port) == second
        # A half-written pair is said and the one in use kept.
        (tmp_path / "tls.key").write_text("not a key")
        with caplog.at_level(logging.WARNING, LOGGER):
            assert not cert.reload_if_changed()
        assert "kept the certificate in use" in caplog.text
        assert await served_der(served.metrics_port) == second
    finally:
        await served.server.stop()


async def test_the_server_watches_a_certificate_folder(tmp_path: Path) -> None:
    write_cert(tmp_path, (["localhost"], ["127.0.0.1"]))
    served = await serve(ServingCert(str(tmp_path)))
    task = served.server._cert_task
    assert task is not None and not task.done()
    await served.server.stop()
    assert task.cancelled()
    self_signed_server = await serve(ServingCert())
    assert self_signed_server.server._cert_task is None  # nothing to read again
    await self_signed_server.server.stop()


async def test_a_self_signed_certificate_names_the_host_and_the_loopback() -> None:
    from cryptography import x509  # noqa: PLC0415 - as the operator: only here

    cert, key = self_signed((["localhost", "pod-0"], ["127.0.0.1", "::1"]))
    parsed = x509.load_pem_x509_certificate(cert)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "pod-0"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert parsed.issuer == parsed.subject
    lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
    assert 365 <= lifetime.days <= 366
    assert b"PRIVATE KEY" in key
    served = await serve(ServingCert())
    try:
        der = await served_der(served.metrics_port)
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        assert subject.startswith("CN=ucloud-operator@")
    finally:
        await served.server.stop()


# ---------------------------------------------------------------- the two reviews on the wire


async def reviews_server(
    answer: tuple[int, dict[str, Any]],
) -> tuple[TestServer, KubeApi, list[Any]]:
    received: list[Any] = []

    async def review(request: web.Request) -> web.Response:
        received.append((request.path, request.headers.get("Authorization"), await request.json()))
        status, body = answer
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", review)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    server = TestServer(app)
    await server.start_server()
    configuration = client.Configuration()
    configuration.host = str(server.make_url("")).rstrip("/")
    configuration.api_key = {"BearerToken": "Bearer operator"}
    api = KubeApi(configuration, concurrency=1, instance="test")
    await api.start()
    return server, api, received


async def test_the_reviews_are_posted_with_the_operators_credentials() -> None:
    status = {"authenticated": True, "user": {"username": READER}}
    server, api, received = await reviews_server((201, {"kind": "TokenReview", "status": status}))
    try:
        assert await api.token_review("reader-token") == status
        spec = {"user": READER, "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}
        await api.subject_access_review(spec)
    finally:
        await api.close()
        await server.close()
    assert received == [
        (
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "Bearer operator",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": "reader-token"},
            },
        ),
        (
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            "Bearer operator",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": spec,
            },
        ),
    ]


@pytest.mark.parametrize(
    ("status", "raised"), [(403, Forbidden), (400, Refused), (503, Transient), (429, Transient)]
)
async def test_a_refused_review_raises_by_kind(status: int, raised: type[Exception]) -> None:
    body = {"kind": "Status", "message": "tokenreviews.authentication.k8s.io is forbidden"}
    server, api, received = await reviews_server((status, body))
    try:
        with pytest.raises(raised, match="forbidden"):
            await api.token_review("t")
        assert len(received) == 1  # one attempt: the scraper asks again
    finally:
        await api.close()
        await server.close()


async def test_an_unreachable_api_server_is_transient() -> None:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"
    api = KubeApi(configuration, concurrency=1, instance="test")
    await api.start()
    try:
        with pytest.raises(Transient, match="create subjectaccessreviews"):
            await api.subject_access_review({"user": READER})
    finally:
        await api.close()


# ---------------------------------------------------------------- the flags


def test_secure_metrics_are_off_by_default() -> None:
    ours = settings.parse([], {})
    assert not ours.metrics_secure and ours.metrics_cert_dir == ""


def test_the_flags_and_their_variables(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    assert settings.parse(["--metrics-secure"], {}).metrics_secure
    assert settings.parse([], {"UCLOUD_METRICS_SECURE": "true"}).metrics_secure
    assert not settings.parse([], {"UCLOUD_METRICS_SECURE": "no"}).metrics_secure
    assert not settings.parse(
        ["--no-metrics-secure"], {"UCLOUD_METRICS_SECURE": "1"}
    ).metrics_secure
    ours = settings.parse(["--metrics-secure", f"--metrics-cert-dir={tmp_path}"], {})
    assert ours.metrics_cert_dir == str(tmp_path)
    env = {"UCLOUD_METRICS_SECURE": "yes", "UCLOUD_METRICS_CERT_DIR": str(tmp_path)}
    assert settings.parse([], env).metrics_cert_dir == str(tmp_path)
    # Port 0 twice: two ports, whichever are free.
    zero = ["--metrics-address=127.0.0.1:0", "--health-address=127.0.0.1:0"]
    assert settings.parse(["--metrics-secure", *zero], {}).metrics_secure


@pytest.mark.parametrize(
    ("argv", "environ", "said"),
    [
        (["--metrics-cert-dir=/x"], {}, "read only with --metrics-secure"),
        (["--metrics-secure", "--metrics-cert-dir=/nowhere"], {}, "no tls.crt or tls.key"),
        (
            ["--metrics-secure", "--metrics-address=:9000", "--health-address=:9000"],
            {},
            "--health-address apart from --metrics-address",
        ),
        ([], {"UCLOUD_METRICS_SECURE": "perhaps"}, "UCLOUD_METRICS_SECURE: expected one of"),
    ],
)
def test_secure_metrics_settings_refused_at_start(
    argv: list[str], environ: dict[str, str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        settings.parse(argv, environ)
    assert said in capsys.readouterr().err


def test_a_cert_dir_missing_one_file_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tls.crt").write_text("x")
    with pytest.raises(SystemExit):
        settings.parse(["--metrics-secure", f"--metrics-cert-dir={tmp_path}"], {})
    assert "no tls.key" in capsys.readouterr().err


# ---------------------------------------------------------------- the chart's metrics.secure

SECURE = ("--set", "metrics.secure=true")
AUTH_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    },
]
READER_RULES = [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]


def args_of(docs: list[dict[str, Any]]) -> list[str]:
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


def metrics_objects(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(
        f"{d['kind']}/{d['metadata']['name']}" for d in docs if "-metrics-" in d["metadata"]["name"]
    )


def test_the_default_render_has_no_secure_metrics(render: Render) -> None:
    docs = render()
    assert metrics_objects(docs) == []
    assert not [a for a in args_of(docs) if a.startswith("--metrics-secure")]
    text = json.dumps(docs)
    assert "tokenreviews" not in text and "nonResourceURLs" not in text


def test_secure_metrics_add_the_flag_the_review_rights_and_the_reader_role(render: Render) -> None:
    docs = render(*SECURE)
    assert "--metrics-secure" in args_of(docs)
    assert not [a for a in args_of(docs) if a.startswith("--metrics-cert-dir")]
    assert metrics_objects(docs) == [
        f"ClusterRole/{RELEASE}-metrics-auth",
        f"ClusterRole/{RELEASE}-metrics-reader",
        f"ClusterRoleBinding/{RELEASE}-metrics-auth",
    ]
    assert named(docs, "ClusterRole", f"{RELEASE}-metrics-auth")["rules"] == AUTH_RULES
    binding = named(docs, "ClusterRoleBinding", f"{RELEASE}-metrics-auth")
    role_ref = binding["roleRef"]
    assert (role_ref["kind"], role_ref["name"]) == ("ClusterRole", f"{RELEASE}-metrics-auth")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]
    assert named(docs, "ClusterRole", f"{RELEASE}-metrics-reader")["rules"] == READER_RULES
    # The reader role is bound to nobody, the operator's own roles are unchanged.
    bound = {b["roleRef"]["name"] for b in kinds(docs, "ClusterRoleBinding")}
    assert f"{RELEASE}-metrics-reader" not in bound
    assert named(docs, "ClusterRole", RELEASE) == named(render(), "ClusterRole", RELEASE)
    # The probes keep their plain-HTTP port.
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert "scheme" not in container["livenessProbe"]["httpGet"]


def test_the_secure_arguments_are_documented_flags_the_operator_parses(render: Render) -> None:
    args = args_of(render(*SECURE))
    ours = settings.parse(args, {})
    assert ours.metrics_secure and ours.metrics_address == ":8080"
    readme = (ROOT / "README.md").read_text()
    documented = readme[readme.index("## Settings") : readme.index("## Metrics")]
    flags = {o for action in settings.parser({})._actions for o in action.option_strings}
    for flag in ("--metrics-secure", "--metrics-cert-dir"):
        assert flag in flags and f"`{flag}`" in documented
    for env in ("UCLOUD_METRICS_SECURE", "UCLOUD_METRICS_CERT_DIR"):
        assert env in documented and env in settings.parser({}).format_help()
    cert_args = args_of(render(*SECURE, "--set", "metrics.certSecret=metrics-tls"))
    assert [a.split("=")[0] for a in cert_args if a.startswith("--metrics-")] == [
        "--metrics-address",
        "--metrics-secure",
        "--metrics-cert-dir",
    ]


def test_a_namespaced_install_gets_the_review_rights_cluster_wide(render: Render) -> None:
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"), *SECURE)
    assert named(docs, "ClusterRole", f"{RELEASE}-metrics-auth")["rules"] == AUTH_RULES
    assert named(docs, "ClusterRoleBinding", f"{RELEASE}-metrics-auth")
    assert named(docs, "ClusterRole", f"{RELEASE}-metrics-reader")


def test_without_rbac_no_metrics_roles(render: Render) -> None:
    docs = render(
        *SECURE,
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=mine",
    )
    assert metrics_objects(docs) == []
    assert "--metrics-secure" in args_of(docs)


def test_a_cert_secret_is_mounted_for_the_cert_dir(render: Render) -> None:
    docs = render(*SECURE, "--set", "metrics.certSecret=metrics-tls")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["metrics-cert"]["readOnly"] is True
    folder = mounts["metrics-cert"]["mountPath"]
    assert f"--metrics-cert-dir={folder}" in container["args"]
    volume = next(v for v in pod["volumes"] if v["name"] == "metrics-cert")
    assert volume["secret"]["secretName"] == "metrics-tls"
    assert [i["path"] for i in volume["secret"]["items"]] == list(settings.CERT_FILES)
    # Without metrics.secure the Secret is not mounted: the flag would be refused.
    plain = render("--set", "metrics.certSecret=metrics-tls")
    assert not [a for a in args_of(plain) if a.startswith("--metrics-cert")]
    assert [m["name"] for m in container_of(plain)["volumeMounts"]] == ["tmp"]


def container_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])


def test_the_service_monitor_scrapes_https_with_a_token(render: Render) -> None:
    monitor = ("--set", "metrics.serviceMonitor.enabled=true")
    (plain,) = one(render(*monitor), "ServiceMonitor")["spec"]["endpoints"]
    assert "scheme" not in plain and "tlsConfig" not in plain
    (endpoint,) = one(render(*monitor, *SECURE), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    authorization = {"credentials": {"name": "prometheus-token", "key": "token"}}
    tls = {"insecureSkipVerify": False, "serverName": f"{RELEASE}-metrics.{NAMESPACE}.svc"}
    (given,) = one(
        render(
            *monitor,
            *SECURE,
            "--set-json",
            f"metrics.serviceMonitor.authorization={json.dumps(authorization)}",
            "--set-json",
            f"metrics.serviceMonitor.tlsConfig={json.dumps(tls)}",
        ),
        "ServiceMonitor",
    )["spec"]["endpoints"]
    assert given["authorization"] == authorization and "bearerTokenFile" not in given
    assert given["tlsConfig"] == tls


def test_a_release_from_before_secure_metrics_renders_as_plain(render: Render) -> None:
    older = render(
        "--set",
        "metrics.serviceMonitor.enabled=true",
        *(
            arg
            for key in (
                "secure",
                "certSecret",
                "serviceMonitor.tlsConfig",
                "serviceMonitor.authorization",
            )
            for arg in ("--set", f"metrics.{key}=null")
        ),
    )
    assert metrics_objects(older) == []
    assert args_of(older) == args_of(render())
    assert "scheme" not in one(older, "ServiceMonitor")["spec"]["endpoints"][0]


def test_metrics_secure_must_be_a_boolean(helm: str) -> None:
    result = helm_template(helm, "--set", "metrics.secure=yes")
    assert result.returncode != 0 and "secure" in result.stderr
