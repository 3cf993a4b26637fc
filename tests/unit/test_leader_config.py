"""Leader election settings: the flags and environment a user sets, and the timings refused as unsafe."""

from __future__ import annotations

import argparse

import pytest

from modelops.controllers import entrypoint, leader


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    entrypoint.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_off_by_default_so_kubeconfig_and_local_runs_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(leader.ENV_ENABLED, raising=False)
    assert entrypoint.election_config(parse()) is None


def test_flags_give_client_go_defaults_and_the_pod_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "modelops-7d9f-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "modelops-system")
    config = entrypoint.election_config(parse("--leader-elect"))
    assert config == leader.ElectionConfig(
        namespace="modelops-system",
        name="modelops-operator",
        identity="modelops-7d9f-abcde",
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
    )


def test_environment_configures_what_the_flags_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(leader.ENV_ENABLED, "true")
    monkeypatch.setenv(leader.ENV_NAMESPACE, "ops")
    monkeypatch.setenv(leader.ENV_NAME, "mo")
    monkeypatch.setenv(leader.ENV_LEASE_DURATION, "30s")
    monkeypatch.setenv(leader.ENV_RENEW_DEADLINE, "20")
    monkeypatch.setenv(leader.ENV_RETRY_PERIOD, "4")
    config = entrypoint.election_config(parse("--leader-election-identity", "me"))
    assert config is not None
    assert (config.namespace, config.name, config.identity) == ("ops", "mo", "me")
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (30, 20, 4)
    assert entrypoint.election_config(parse("--no-leader-elect")) is None


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--leader-election-renew-deadline", "15"],
            "--leader-election-lease-duration (15s) must be greater",
        ),
        (
            ["--leader-election-retry-period", "9"],
            "must be greater than 1.2 x --leader-election-retry-period",
        ),
        (["--leader-election-lease-duration", "5"], "--leader-election-renew-deadline (10s)"),
    ],
)
def test_unsafe_timings_stop_the_start_naming_the_flag(flags: list[str], named: str) -> None:
    with pytest.raises(entrypoint.StartupError, match="leader-election") as error:
        entrypoint.election_config(parse("--leader-elect", "--leader-election-identity", "me", *flags))
    assert named in str(error.value)


def test_identity_outside_a_pod_is_unique_per_process() -> None:
    first, second = leader.default_identity({}), leader.default_identity({})
    assert first != second and first.split("_")[0] == second.split("_")[0]
    assert leader.default_identity({"POD_NAME": "p"}) == "p"
    assert leader.default_namespace({"POD_NAMESPACE": "ns"}) == "ns"
