"""Settings: flags with environment fallbacks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ucloud_operator.settings import parse, parser


def test_defaults() -> None:
    ours = parse([], {})
    assert ours.namespaces == ()
    assert ours.image_pull_grace == 120
    assert ours.node_lost_grace == 60
    assert ours.rules.node_lost_grace == timedelta(seconds=60)
    assert ours.pod_policy
    assert (ours.log_level, ours.log_format) == ("INFO", "text")


def test_environment_fallbacks() -> None:
    ours = parse(
        [],
        {
            "UCLOUD_NAMESPACES": "b, a",
            "UCLOUD_IMAGE_PULL_GRACE": "30",
            "UCLOUD_LOG_FORMAT": "json",
            "UCLOUD_LOG_LEVEL": "debug",
            "UCLOUD_POD_POLICY": "off",
        },
    )
    assert ours.namespaces == ("a", "b")
    assert ours.image_pull_grace == 30
    assert (ours.log_level, ours.log_format, ours.pod_policy) == ("DEBUG", "json", False)


def test_flags_win_over_the_environment() -> None:
    ours = parse(["-n", "x", "--image-pull-grace", "5"], {"UCLOUD_NAMESPACES": "a"})
    assert (ours.namespaces, ours.image_pull_grace) == (("x",), 5)


def test_node_lost_grace_flag_and_environment() -> None:
    assert parse([], {"UCLOUD_NODE_LOST_GRACE": "15"}).node_lost_grace == 15
    ours = parse(["--node-lost-grace", "2.5"], {"UCLOUD_NODE_LOST_GRACE": "15"})
    assert ours.node_lost_grace == 2.5
    assert ours.rules.node_lost_grace == timedelta(seconds=2.5)
    assert parse(["--node-lost-grace", "0"], {}).rules.node_lost_grace == timedelta(0)


@pytest.mark.parametrize("flag", ["--image-pull-grace", "--node-lost-grace"])
def test_a_negative_grace_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse([flag, "-1"], {})
    assert "must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--image-pull-grace", "soon"], "--image-pull-grace"),
        (["--api-concurrency", "0"], "must be >= 1"),
        (["--log-format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_bad_values_are_refused_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(argv, {})
    assert message in capsys.readouterr().err


def test_leader_election_is_off_unless_asked_for() -> None:
    assert not parse([], {}).leader_elect  # a single process (`make run`) needs no Lease
    assert parse(["--leader-elect"], {}).leader_elect
    assert parse([], {"UCLOUD_LEADER_ELECT": "true"}).leader_elect
    assert not parse(["--no-leader-elect"], {"UCLOUD_LEADER_ELECT": "true"}).leader_elect
    assert not parse([], {"UCLOUD_LEADER_ELECT": "false"}).leader_elect
    ours = parse(["--leader-elect"], {"POD_NAMESPACE": "ops"})
    assert (ours.lease_namespace, ours.lease_name) == ("ops", "ucloud-operator")


def test_api_concurrency_defaults_to_32_as_benchmarked() -> None:
    ours = parse([], {})
    assert ours.api_concurrency == 32
    assert ours.deprecated == ()
    assert parse(["--api-concurrency", "8"], {}).api_concurrency == 8
    assert parse([], {"UCLOUD_API_CONCURRENCY": "8"}).api_concurrency == 8


@pytest.mark.parametrize(
    ("argv", "environ", "concurrency", "deprecated"),
    [
        # Deployments rendered by the chart before 0.1.0's --api-concurrency pass the old flag.
        (["--api-threads=16"], {}, 16, ("--api-threads is deprecated: use --api-concurrency",)),
        (
            ["--api-threads", "4", "--api-concurrency", "8"],
            {},
            8,
            ("--api-threads is deprecated: use --api-concurrency",),
        ),
        (
            [],
            {"UCLOUD_API_THREADS": "12"},
            12,
            ("UCLOUD_API_THREADS is deprecated: use UCLOUD_API_CONCURRENCY",),
        ),
        ([], {"UCLOUD_API_THREADS": "12", "UCLOUD_API_CONCURRENCY": "20"}, 20, ()),
        (
            ["--api-threads=6"],
            {"UCLOUD_API_CONCURRENCY": "20"},
            6,
            ("--api-threads is deprecated: use --api-concurrency",),
        ),
    ],
)
def test_the_old_name_api_threads_is_still_read_and_said_deprecated(
    argv: list[str], environ: dict[str, str], concurrency: int, deprecated: tuple[str, ...]
) -> None:
    ours = parse(argv, environ)
    assert ours.api_concurrency == concurrency
    assert ours.deprecated == deprecated


def test_the_help_documents_the_old_name() -> None:
    text = parser({}).format_help()
    assert "--api-concurrency API_CONCURRENCY, --api-threads API_CONCURRENCY" in text
    assert "UCLOUD_API_THREADS" in text and "deprecated" in text


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"UCLOUD_IMAGE_PULL_GRACE": "soon"},
            "not a number: 'soon' (set by UCLOUD_IMAGE_PULL_GRACE)",
        ),
        ({"UCLOUD_WORKERS": "0"}, "must be >= 1, got 0 (set by UCLOUD_WORKERS)"),
        ({"UCLOUD_POD_POLICY": "maybe"}, "invalid choice: 'maybe'"),
        ({"UCLOUD_LOG_FORMAT": "xml"}, "(set by UCLOUD_LOG_FORMAT)"),
        ({"UCLOUD_LEADER_ELECT": "perhaps"}, "UCLOUD_LEADER_ELECT: expected one of"),
        ({"UCLOUD_GANG_ADMISSION": "always"}, "(set by UCLOUD_GANG_ADMISSION)"),
    ],
)
def test_bad_environment_values_are_refused_naming_the_variable(
    environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([], environ)
    assert message in capsys.readouterr().err


def test_the_command_line_wins_over_the_environment() -> None:
    environ = {"UCLOUD_WORKERS": "3", "UCLOUD_LEADER_ELECT": "yes"}
    assert parse(["--workers", "5", "--no-leader-elect"], environ).workers == 5
    assert parse([], environ).workers == 3
    # A bad variable is refused even when its flag is given too: the deployment is wrong.
    with pytest.raises(SystemExit):
        parse(["--workers", "5"], {"UCLOUD_WORKERS": "many"})


def test_gang_admission_is_auto_unless_told() -> None:
    assert parse([], {}).gang_admission == "auto"
    assert parse(["--gang-admission=off"], {}).gang_admission == "off"
    assert parse([], {"UCLOUD_GANG_ADMISSION": "on"}).gang_admission == "on"
    assert parse(["--gang-admission", "auto"], {"UCLOUD_GANG_ADMISSION": "on"}).gang_admission == (
        "auto"
    )
