"""The public records: deployment config, server answers read into models, rollouts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bentoship import DeploymentConfig, DeploymentInfo, InvalidRequestError, RevisionInfo, Rollout
from bentoship.models import config_matches, rollout_target

from .transports import deployment_json

# DeploymentConfig


def test_envs_and_labels_come_as_a_mapping_or_as_bentocloud_lists() -> None:
    listed = DeploymentConfig.from_dict(
        {
            "envs": [{"name": "MODE", "value": "fast"}, {"name": "N", "value": 3}],
            "labels": [{"key": "team", "value": "ml"}],
        }
    )
    mapped = DeploymentConfig.from_dict(
        {"envs": {"MODE": "fast", "N": 3}, "labels": {"team": "ml"}}
    )
    assert listed == mapped
    assert listed.envs == {"MODE": "fast", "N": "3"} and listed.labels == {"team": "ml"}
    for bad, kind in (("MODE=fast", "str"), (["MODE=fast"], "list of other items"), (5, "int")):
        with pytest.raises(InvalidRequestError) as caught:
            DeploymentConfig.from_dict({"envs": bad})
        message = str(caught.value)
        assert message.startswith("envs: expected a mapping") and message.endswith(kind)
        assert "\n" not in message and "MODE=fast" not in message


def test_from_dict_accepts_what_orchestrators_pass() -> None:
    config = DeploymentConfig.from_dict(
        {"min_replicas": 1.0, "max_replicas": 3, "envs": {"WORKERS": 2}, "labels": {"v": 1.5}}
    )
    assert config.min_replicas == 1 and isinstance(config.min_replicas, int)
    assert config.envs == {"WORKERS": "2"} and config.labels == {"v": "1.5"}
    assert DeploymentConfig.from_dict(None) == DeploymentConfig()
    assert DeploymentConfig.from_dict(config.to_dict()) == config


def test_from_dict_names_an_unknown_key_and_the_known_ones() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        DeploymentConfig.from_dict({"replicas": 2})
    message = str(caught.value)
    assert "'replicas'" in message and "min_replicas" in message and "instance_type" in message


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"min_replicas": -1}, "min_replicas"),
        ({"max_replicas": 1.5}, "max_replicas"),
        ({"min_replicas": "2"}, "min_replicas"),
        ({"min_replicas": 3, "max_replicas": 1}, "must not exceed"),
    ],
)
def test_bad_replica_counts_are_rejected(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle):
        DeploymentConfig.from_dict(settings)


def test_to_api_is_the_bentocloud_body_for_the_entry_service() -> None:
    config = DeploymentConfig(
        instance_type="cpu.medium",
        min_replicas=0,
        max_replicas=2,
        envs={"B": "2", "A": "1"},
        labels={"team": "ml"},
        access_authorization=True,
        strategy="Recreate",
    )
    assert config.to_api("Echo") == {
        "access_authorization": True,
        "envs": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "labels": [{"key": "team", "value": "ml"}],
        "services": {
            "Echo": {
                "instance_type": "cpu.medium",
                "scaling": {"min_replicas": 0, "max_replicas": 2},
                "deployment_strategy": "Recreate",
            }
        },
    }
    # unset fields are left to the server's defaults
    assert DeploymentConfig().to_api("Echo")["services"] == {"Echo": {}}
    assert DeploymentConfig(min_replicas=2).to_api("")["services"] == {}


# config_matches: does re-applying this config change anything?

CURRENT = {
    "access_authorization": False,
    "envs": [{"name": "MODE", "value": "a"}],
    "labels": [],
    "services": {
        "Echo": {
            "instance_type": "cpu.small",
            "scaling": {"min_replicas": 1, "max_replicas": 2, "policy": None},
            "deployment_strategy": "RollingUpdate",
        }
    },
}


@pytest.mark.parametrize(
    ("wanted", "matches"),
    [
        ({"envs": [{"name": "MODE", "value": "a"}]}, True),
        ({"envs": [{"name": "MODE", "value": "a"}], "services": {"Echo": {}}}, True),
        (
            {
                "envs": [{"name": "MODE", "value": "a"}],
                "services": {"Echo": {"scaling": {"max_replicas": 2}}},
            },
            True,
        ),
        ({"envs": []}, False),
        ({"envs": [{"name": "MODE", "value": "b"}]}, False),
        ({"envs": [{"name": "MODE", "value": "a"}], "access_authorization": True}, False),
        (
            {
                "envs": [{"name": "MODE", "value": "a"}],
                "services": {"Echo": {"scaling": {"min_replicas": 0}}},
            },
            False,
        ),
        (
            {
                "envs": [{"name": "MODE", "value": "a"}],
                "services": {"Echo": {"instance_type": "cpu.large"}},
            },
            False,
        ),
        (
            {
                "envs": [{"name": "MODE", "value": "a"}],
                "services": {"Other": {"instance_type": "cpu.small"}},
            },
            False,
        ),
    ],
)
def test_config_matches_only_when_every_wanted_setting_holds(
    wanted: dict[str, Any], matches: bool
) -> None:
    assert config_matches(wanted, CURRENT) is matches


# server answers read into models


def test_deployment_info_reads_the_servers_deployment() -> None:
    data = deployment_json(
        "svc",
        "echo:v2",
        "deploying",
        revision="rev-2",
        serving="rev-1",
        config={"envs": [{"name": "A", "value": "1"}]},
        reason="starting",
    )
    dep = DeploymentInfo.from_api(data)
    assert dep.name == "svc" and dep.status == "deploying"
    assert dep.url == "http://127.0.0.1:9/svc" and dep.bento == "echo:v2"
    assert dep.config == {"envs": [{"name": "A", "value": "1"}]}
    assert (dep.target_revision, dep.serving_revision) == ("rev-2", "rev-1")
    assert dep.reason == "starting" and dep.raw is data


def test_deployment_info_from_plain_bentocloud_and_from_a_bare_answer() -> None:
    plain = DeploymentInfo.from_api(deployment_json("svc", revision="rev-9", extensions=False))
    assert plain.target_revision == "rev-9" and plain.serving_revision is None
    assert plain.reason == ""
    bare = DeploymentInfo.from_api({"name": "svc"})
    assert (bare.status, bare.url, bare.bento, bare.config) == ("unknown", "", "", {})
    assert bare.target_revision is None


def test_revision_info_reads_the_revisions_extension() -> None:
    data = {
        "uid": "rev-2",
        "name": "r2",
        "status": "inactive",
        "created_at": "2025-01-01T00:00:00Z",
        "targets": [
            {"name": "canary", "bento": {"name": "v0", "repository": {"name": "echo"}}},
            {"name": "main", "config": {}, "bento": {"name": "v2", "repository": {"name": "echo"}}},
        ],
        "bentoship": {"phase": "failed", "serving": False, "warm": False, "reason": "boom"},
    }
    rev = RevisionInfo.from_api(data)
    assert (rev.uid, rev.name, rev.bento, rev.phase) == ("rev-2", "r2", "echo:v2", "failed")
    assert not rev.serving and rev.reason == "boom" and rev.port is None
    plain = RevisionInfo.from_api({"uid": "rev-1", "status": "active", "targets": []})
    assert plain.serving and plain.phase == "active" and plain.bento == ""


# Rollout

ROLLOUT = Rollout(
    name="svc",
    bento="echo:v2",
    revision="rev-2",
    endpoint_url="http://127.0.0.1:9/svc",
    previous_revision="rev-1",
    previous_bento="echo:v1",
    previous_config={"envs": []},
)


def test_rollout_round_trips_through_json_and_dict() -> None:
    assert Rollout.from_json(ROLLOUT.to_json()) == ROLLOUT
    assert Rollout.from_dict(json.loads(ROLLOUT.to_json())) == ROLLOUT
    assert json.loads(ROLLOUT.to_json())["previous_bento"] == "echo:v1"


def test_parse_accepts_a_rollout_its_dict_and_its_json() -> None:
    assert Rollout.parse(ROLLOUT) is ROLLOUT
    assert Rollout.parse(ROLLOUT.to_dict()) == ROLLOUT
    assert Rollout.parse(ROLLOUT.to_json()) == ROLLOUT
    # XCom may add keys of its own: they are ignored
    assert Rollout.parse({**ROLLOUT.to_dict(), "extra": 1}) == ROLLOUT


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('["svc", "echo:v2"]', "must be an object"),
        ('{"name": "svc"}', "not a bentoship rollout record"),
        ({"bento": "echo:v2"}, "not a bentoship rollout record"),
        (42, "not int"),
        (None, "not NoneType"),
    ],
)
def test_parse_rejects_what_is_not_a_rollout(value: object, needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle) as caught:
        Rollout.parse(value)  # type: ignore[arg-type]
    assert "deploy" in str(caught.value)


def test_rollout_target_is_a_rollout_for_records_and_text_for_names() -> None:
    assert rollout_target(ROLLOUT) is ROLLOUT
    assert rollout_target(ROLLOUT.to_dict()) == ROLLOUT
    assert rollout_target("  " + ROLLOUT.to_json()) == ROLLOUT
    assert rollout_target(" svc ") == "svc"
    assert rollout_target("http://127.0.0.1:9/svc") == "http://127.0.0.1:9/svc"


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_rollout_target_rejects_empty_text(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="deployment name"):
        rollout_target(value)


def test_rollout_target_rejects_broken_json_objects() -> None:
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        rollout_target('{"name": "svc",')
