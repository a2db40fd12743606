"""The console's Deploy form: its fields become the REST API's deployment body, checked by the
same rules; the API's one-line error is shown beside the field it names; "Update" opens the form
filled with a deployment's values; the deployment page follows the rollout live, links its
endpoint and opens the service's own Swagger UI ("Try it").

The mappings are tested without a process; one browser walk creates, follows, tries and
updates a deployment of the echo bento on the shared control plane (two ``bentoml serve``
starts: the create and the update).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import httpx
import pytest

from bentoship import Client
from bentoship.errors import NotFoundError
from bentoship.server import LocalControlPlane
from bentoship.server.console.deploy_form import (
    DeployForm,
    EnvRow,
    FieldError,
    body_of,
    field_error,
    form_of_revision,
    kept_of,
    read_form,
)
from bentoship.server.console.deploy_view import (
    deploy_refusal,
    instance_type_choices,
    live_status,
    settled_message,
    try_it,
    update_refusal,
    version_choices,
)
from bentoship.server.console.pages import _environment
from bentoship.server.deploy_config import check_body, config_for
from bentoship.server.endpoint.try_tickets import (
    issue_ticket,
    redeem_query,
    ticket_in_cookies,
    valid_ticket,
)
from bentoship.server.errors import DomainError
from bentoship.server.gpu.inventory import Gpu, Inventory
from bentoship.server.store import Artifact
from bentoship.server.tokens import SERVER_PRINCIPAL, Principal
from bentoship.steps import push

from .browser import Browser, chromium

SCRIPT = "<script>alert(1)</script>"
READER = Principal("viewer", "u1", frozenset({"read_cluster"}))
WRITER = Principal("ci", "u2", frozenset({"read_cluster", "write_cluster"}))


def form(**changed: Any) -> DeployForm:
    values: dict[str, Any] = {
        "name": "svc",
        "repository": "echo",
        "version": "v1",
        "envs": (EnvRow("A", "1"),),
    }
    return DeployForm(**{**values, **changed})


def stored(made: dict[str, Any], service: str = "Echo") -> dict[str, Any]:
    """The config the API would store for ``made`` (its rules that need no state, then the
    bento's)."""
    return config_for(check_body(made), service)


def refusal_of(made: Any) -> FieldError:
    """The field the API's error for the form's body names (the body must be refused)."""
    with pytest.raises(DomainError) as refused:
        stored(made.body)
    return field_error(refused.value.message, made.env_rows)


# the form and the body


def test_the_posted_fields_make_the_form_with_its_env_rows_in_order() -> None:
    posted = [
        ("csrf_token", "c"),
        ("cluster", "local"),
        ("name", " svc "),
        ("access", "authorized"),
        ("repository", "echo"),
        ("version", "v1"),
        ("instance_type", "cpu.medium"),
        ("min_replicas", "0"),
        ("max_replicas", "3"),
        ("env_name", " A "),
        ("env_value", " spaced "),
        ("env_name", ""),
        ("env_value", ""),
        ("env_name", "B"),
        ("env_value", "2"),
        ("secrets", "db"),
        ("secrets", "tls"),
    ]
    assert read_form(posted) == DeployForm(
        cluster="local",
        name="svc",
        access="authorized",
        repository="echo",
        version="v1",
        instance_type="cpu.medium",
        min_replicas="0",
        max_replicas="3",
        envs=(EnvRow("A", " spaced "), EnvRow("", ""), EnvRow("B", "2")),
        secrets=("db", "tls"),
    )
    assert read_form([]).cluster == "local" and read_form([]).access == "public"


def test_the_form_becomes_the_apis_body_and_the_config_it_stores() -> None:
    made = body_of(
        form(
            access="authorized",
            instance_type="cpu.large",
            min_replicas="0",
            max_replicas="4",
            envs=(EnvRow("A", "1"), EnvRow("", ""), EnvRow("B", "")),
            secrets=("db",),
        ),
        "Echo",
    )
    assert made.body == {
        "cluster": "local",
        "access_authorization": True,
        "name": "svc",
        "bento": "echo:v1",
        "envs": [{"name": "A", "value": "1"}, {"name": "B", "value": ""}],
        "secrets": ["db"],
        "services": {
            "Echo": {
                "instance_type": "cpu.large",
                "scaling": {"min_replicas": 0, "max_replicas": 4},
            }
        },
    }
    assert made.env_rows == (0, 2), "the empty row is left out"
    config = stored(made.body)
    assert config["access_authorization"] is True and config["secrets"] == ["db"]
    assert config["services"]["Echo"]["scaling"] == {
        "min_replicas": 0,
        "max_replicas": 4,
        "policy": None,
    }


def test_fields_left_empty_take_the_apis_defaults() -> None:
    made = body_of(
        DeployForm(
            repository="echo", version="v1", instance_type="", min_replicas="", max_replicas=""
        ),
        "",
    )
    assert "name" not in made.body and "secrets" not in made.body
    assert made.body["access_authorization"] is False
    assert made.body["services"] == {"default": {"instance_type": None}}
    service = stored(made.body, "")["services"]["default"]
    assert service["instance_type"] == "cpu.small"
    assert (service["scaling"]["min_replicas"], service["scaling"]["max_replicas"]) == (1, 1)


def test_update_opens_the_form_with_the_revisions_values_and_keeps_what_it_does_not_show() -> None:
    config = stored(
        {
            "bento": "echo:v1",
            "access_authorization": True,
            "envs": [{"name": "A", "value": "1"}],
            "labels": [{"key": "team", "value": "ml"}],
            "secrets": ["db"],
            "services": {
                "Echo": {
                    "instance_type": "cpu.medium",
                    "scaling": {"min_replicas": 2, "max_replicas": 5, "policy": {"x": 1}},
                    "envs": [{"name": "S", "value": "2"}],
                    "deployment_strategy": "Recreate",
                    "cold_start_timeout": 30,
                    "config_overrides": {"traffic": {"timeout": 9}},
                }
            },
        }
    )
    filled = form_of_revision("svc", "echo:v1", config)
    assert filled == DeployForm(
        name="svc",
        access="authorized",
        repository="echo",
        version="v1",
        instance_type="cpu.medium",
        min_replicas="2",
        max_replicas="5",
        envs=(EnvRow("A", "1"),),
        secrets=("db",),
    )
    unchanged = body_of(filled, "Echo", kept_of(config))
    assert stored(unchanged.body) == config, "an update with no change makes no new revision"
    changed = body_of(
        DeployForm(**{**filled.__dict__, "envs": (*filled.envs, EnvRow("NEW", "x"))}),
        "Echo",
        kept_of(config),
    )
    again = stored(changed.body)
    assert again["envs"] == [{"name": "A", "value": "1"}, {"name": "NEW", "value": "x"}]
    assert {k: v for k, v in again.items() if k != "envs"} == {
        k: v for k, v in config.items() if k != "envs"
    }


# the API's errors beside their fields


def test_each_rule_the_api_breaks_is_shown_beside_its_field() -> None:
    cases = [
        (form(min_replicas="3", max_replicas="2"), "max_replicas", "must not exceed"),
        (form(max_replicas="0"), "max_replicas", "expected an integer >= 1, got 0"),
        (form(min_replicas="-1"), "min_replicas", "expected an integer >= 0"),
        (form(min_replicas="lots"), "min_replicas", "Input should be a valid integer"),
        (form(instance_type="gpu.h100"), "instance_type", "unknown instance type 'gpu.h100'"),
        (form(name="Bad_Name"), "name", "'Bad_Name' is not a valid deployment name"),
        (form(access="sometimes"), "access", "valid boolean"),
        (form(version=""), "version", "'echo:' is not a bento tag"),
        (form(repository="", version=""), "version", "missing"),
        (form(secrets=("bad name",)), "secrets", "'bad name' is not a secret name"),
        (
            form(envs=(EnvRow("", ""), EnvRow("OK", "1"), EnvRow("", ""), EnvRow("1BAD", "x"))),
            "env-3-name",
            "'1BAD' is not an env var name",
        ),
        (form(envs=(EnvRow("", "value without a name"),)), "env-0-name", "'' is not an env"),
        (form(envs=(EnvRow("A", "nul\x00"),)), "env-0-value", "holds a NUL byte"),
    ]
    for given, field, words in cases:
        wrong = refusal_of(body_of(given, "Echo"))
        assert wrong.field == field, (given, wrong)
        assert words in wrong.message, (given, wrong)
        assert not wrong.message.startswith("invalid"), "the field's own problem, not the path"


def test_errors_after_the_body_rules_name_their_fields_too() -> None:
    assert field_error(
        "bento echo:v9 not found on this server (record not found); push it first"
    ) == FieldError(
        "version", "bento echo:v9 not found on this server (record not found); push it first"
    )
    assert field_error(
        "bento echo:v1 needs model m:1, which was not pushed; push it first"
    ).field == ("version")
    assert (
        field_error("deployment 'svc' already exists; update it instead of creating it").field
        == "name"
    )
    assert field_error("cluster 'x' not found; the local control plane has one cluster").field == (
        "cluster"
    )
    assert field_error("asks for 2 a100 GPUs, but this machine has no GPU").field == "instance_type"
    assert field_error(
        "invalid deployment config: secrets[0]: secret 'db' does not exist; create it"
    ) == FieldError("secrets", "secret 'db' does not exist; create it")
    other = "invalid deployment config: labels[0].key: 'x y' is not a label key"
    assert field_error(other) == FieldError("", other), "a field the form lacks: the whole form"
    assert field_error("something else went wrong") == FieldError("", "something else went wrong")
    assert FieldError("env-2-value", "x").label == "Envs"
    assert FieldError("max_replicas", "x").label == "Max replicas"


# who may deploy, the endpoint, the live status, the lists


def test_deploying_and_updating_need_the_scope_the_api_needs() -> None:
    for principal in (SERVER_PRINCIPAL, WRITER, Principal("all", "u3", frozenset({"api"}))):
        assert deploy_refusal(principal) == "" and update_refusal(principal, "svc") == ""
    assert deploy_refusal(READER) == (
        "Deploy needs the write_cluster scope (or api): this session's token viewer has "
        "read_cluster. Sign in with a token that has it."
    )
    assert update_refusal(READER, "svc").startswith("Update needs the write_cluster scope")
    assert deploy_refusal(None).startswith("Sign in")
    assert READER.may("GET", "/deploy") and not READER.may("POST", "/deploy")
    assert WRITER.may("POST", "/deploy") and WRITER.may("POST", "/deployments/svc/update")


def test_try_it_opens_the_root_and_an_authorized_one_with_a_ticket_for_it_alone() -> None:
    public = try_it("http://127.0.0.1:4000", None)
    assert (public.href, public.refusal) == ("http://127.0.0.1:4000/", "")
    ticket = issue_ticket("server-token", "svc")
    authorized = try_it("http://127.0.0.1:4000", ticket)
    assert authorized.href == f"http://127.0.0.1:4000/?bentoship_try={ticket}"
    assert authorized.refusal == ""
    refused = try_it("http://127.0.0.1:4000", ticket, "needs write_cluster")
    assert refused.refusal == "needs write_cluster" and ticket not in refused.href
    assert valid_ticket("server-token", "svc", ticket)
    assert not valid_ticket("server-token", "other", ticket)
    assert not valid_ticket("another-token", "svc", ticket)
    assert not valid_ticket("server-token", "svc", ticket, now=time.time() + 3601)
    assert not valid_ticket("server-token", "svc", "x.y") and not valid_ticket("t", "svc", "")


def test_tickets_are_found_in_cookies_and_traded_from_the_link() -> None:
    headers = [(b"cookie", b"a=1; bentoship_try_my_svc=123.abc; b=2")]
    assert ticket_in_cookies(headers, "my-svc") == "123.abc"
    assert ticket_in_cookies(headers, "other") is None
    assert redeem_query(b"/docs?x=1&bentoship_try=9.zz") == ("9.zz", b"/docs?x=1")
    assert redeem_query(b"/?bentoship_try=9.zz") == ("9.zz", b"/")
    assert redeem_query(b"/predict?x=1") is None


def deployment(status: str, phase: str | None, ready: int = 0, desired: int = 1) -> dict[str, Any]:
    replicas = {"ready": ready, "desired": desired, "min": 1, "max": 1}
    ext = {"target_revision": "r2", "target_phase": phase, "replicas": replicas, "reason": ""}
    return {"status": status, "bentoship": ext}


def test_the_status_is_polled_while_the_target_revision_starts() -> None:
    starting = live_status(deployment("deploying", "starting", 0, 1))
    assert (starting.polling, starting.detail) == (True, "r2 starting, 0/1 ready")
    assert live_status(deployment("running", "starting", 1, 1)).polling, "an update starts"
    green = live_status(deployment("running", "serving", 1, 1))
    assert (green.polling, green.detail) == (False, "r2 serving, 1/1 ready")
    assert not live_status(deployment("failed", "failed", 0, 0)).polling
    assert live_status({"status": "deploying"}).polling, "without the extensions too"
    assert live_status(deployment("deploying", "starting", 0, 0)).detail == "r2 starting"
    assert settled_message("svc", deployment("running", "serving", 1, 1)) == {
        "notice": "svc is running: r2 serving, 1/1 ready."
    }
    failed = deployment("failed", "failed", 0, 0)
    failed["bentoship"]["reason"] = "exited with code 1"
    assert settled_message("svc", failed) == {"problem": "svc is failed: exited with code 1"}


def artifact(version: str, status: str = "success", **changed: Any) -> Artifact:
    values: dict[str, Any] = {
        "kind": "bento",
        "repository": "echo",
        "version": version,
        "uid": version,
        "description": "",
        "manifest": None,
        "labels": [],
        "build_at": "",
        "created_at": "2024-05-01T12:00:00.123456Z",
        "updated_at": None,
        "upload_status": status,
        "upload_finished_reason": "",
    }
    return Artifact(**{**values, **changed})


def test_versions_are_listed_newest_first_with_labels_and_creation_time() -> None:
    listed = version_choices(
        [
            artifact("v3", "uploading"),
            artifact("v2", labels=[{"key": "stage", "value": "prod"}]),
            artifact("v1", created_at="2024-04-30T08:09:10.5Z"),
        ]
    )
    assert [(v.version, v.labels, v.created) for v in listed] == [
        ("v2", (("stage", "prod"),), "2024-05-01 12:00:00 UTC"),
        ("v1", (), "2024-04-30 08:09:10 UTC"),
    ]
    assert len(version_choices(artifact(f"v{i}") for i in range(80))) == 50


def test_the_instance_types_include_the_gpu_types_of_this_machines_gpus() -> None:
    assert [name for name, _ in instance_type_choices(Inventory())] == [
        "cpu.small",
        "cpu.medium",
        "cpu.large",
    ]
    gpus = Inventory(tuple(Gpu(i, "NVIDIA A100-SXM4-40GB", 40 * 1024**3) for i in range(2)))
    offered = dict(instance_type_choices(gpus, "gpu.h100.1"))
    assert offered["gpu.a100.1"] == "1 x NVIDIA A100-SXM4-40GB (40Gi each) on the local machine"
    assert "gpu.a100.2" in offered
    assert offered["gpu.h100.1"] == "not offered by this machine", "an update keeps its type"


# the templates


class Choices:
    clusters = ("local",)
    repositories = ("echo",)
    instance_types = [("cpu.small", "1 CPU, 2Gi on the local machine")]
    gpus = "no GPU (NVML finds none)"
    secrets = [("db", "env: PASSWORD")]


def render_form(given: DeployForm, error: FieldError | None = None, refusal: str = "") -> str:
    listed = version_choices([artifact("v1", labels=[{"key": "note", "value": SCRIPT}])])
    return (
        _environment()
        .get_template("deploy_form.html")
        .render(
            form=given,
            choices=Choices(),
            versions=listed,
            rows=[*given.envs, EnvRow()],
            error=error,
            errors={error.field: error.message} if error else {},
            action="/deploy",
            updating=None,
            refusal=refusal,
            csrf="c",
            path="/deploy",
            principal=None,
        )
    )


def test_the_form_shows_the_error_beside_its_field_and_keeps_every_value_as_text() -> None:
    given = form(envs=(EnvRow("A", SCRIPT), EnvRow("1BAD", "x")), secrets=("db",), name=SCRIPT)
    html = render_form(given, FieldError("env-1-name", "'1BAD' is not an env var name"))
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<span class="field-error" id="error-env-1-name" role="alert">' in html
    assert 'value="1BAD" placeholder="NAME" aria-label="Env name" spellcheck="false" ' in html
    assert 'aria-invalid="true" aria-describedby="error-env-1-name"' in html
    assert 'see <a href="#error-env-1-name">Envs</a> below' in html
    assert 'name="secrets" value="db" checked' in html
    assert 'name="version" value="v1" id="version-1" checked' in html
    assert 'name="csrf_token" value="c"' in html and 'action="/deploy"' in html
    assert 'hx-get="/deploy/versions" hx-target="#versions"' in html
    plain = render_form(form(min_replicas="3", max_replicas="2"), FieldError("max_replicas", "m"))
    assert (
        'id="max_replicas" name="max_replicas" value="2" step="1" class="count" aria-invalid'
        in (plain)
    )
    assert plain.count('aria-invalid="true"') == 1


def test_a_session_that_may_not_deploy_sees_the_form_and_the_button_disabled_and_why() -> None:
    html = render_form(form(), refusal=deploy_refusal(READER))
    assert '<fieldset class="deploy-fields" disabled>' in html
    assert "this session&#39;s token viewer has read_cluster" in html
    listing = (
        _environment()
        .get_template("deployments.html")
        .render(rows=[], deploy_refusal=deploy_refusal(READER), path="/deployments", csrf="")
    )
    assert 'id="deploy-button" disabled aria-describedby="deploy-refusal"' in listing
    allowed = (
        _environment()
        .get_template("deployments.html")
        .render(rows=[], deploy_refusal="", path="/deployments", csrf="")
    )
    assert '<a class="button primary" id="deploy-button" href="/deploy">Deploy</a>' in allowed


# the walk, in a real browser against a real control plane

NAME = "console-deploy"
SECRET = "console-deploy-key"
SECRET_VALUE = "s3cr3t-console-value"


def sign_in(browser: Browser, endpoint: str, token: str, page_url: str) -> None:
    page = browser.page
    page.goto(page_url)
    page.fill("input[name=token]", token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(page_url)


def revision_config(client: Client, revision: str) -> dict[str, Any]:
    return next(r.config for r in client.list_revisions(NAME) if r.name == revision)


def test_the_console_deploys_follows_tries_and_updates_a_deployment(
    shared_plane: LocalControlPlane, echo_v1: str, echo_v2: str
) -> None:
    assert shared_plane.connection is not None
    endpoint, token = shared_plane.connection.endpoint, shared_plane.connection.token
    headers = {"Authorization": f"Bearer {token}"}
    v1, v2 = echo_v1.partition(":")[2], echo_v2.partition(":")[2]
    reader = httpx.post(
        f"{endpoint}/api/v1/api_tokens",
        json={"name": "deploy-viewer", "scopes": ["read_cluster"]},
        headers=headers,
    ).json()["token"]
    secret = {
        "name": SECRET,
        "content": {"type": "env", "items": [{"key": "DEPLOY_KEY", "value": SECRET_VALUE}]},
    }
    made = httpx.post(f"{endpoint}/api/v1/org_secrets", json=secret, headers=headers)
    assert made.status_code == 200, made.text
    with Client(endpoint, token) as client, chromium() as browser:
        try:
            push(echo_v1, client=client)
            push(echo_v2, client=client)
            walk(browser, client, endpoint, token, reader, v1, v2)
        finally:
            with contextlib.suppress(NotFoundError):
                client.delete_deployment(NAME)
            httpx.delete(f"{endpoint}/api/v1/org_secrets/{SECRET}", headers=headers)


def walk(
    browser: Browser, client: Client, endpoint: str, token: str, reader: str, v1: str, v2: str
) -> None:
    page = browser.page
    page_url = f"{endpoint}/deployments/{NAME}"

    # a session whose token may not create deployments sees why
    sign_in(browser, endpoint, reader, f"{endpoint}/deployments")
    assert page.is_disabled("#deploy-button")
    assert page.inner_text("#deploy-refusal") == (
        "Deploy needs the write_cluster scope (or api): this session's token deploy-viewer has "
        "read_cluster. Sign in with a token that has it."
    )
    browser.shot("deploy-01-no-scope")
    with page.expect_navigation():
        page.click("form.signout button[type=submit]")

    sign_in(browser, endpoint, token, f"{endpoint}/deployments")
    page.click("#deploy-button")
    page.wait_for_url(f"{endpoint}/deploy")

    # the version list follows the repository chosen (htmx replaces it)
    page.evaluate("document.getElementById('versions').dataset.stale = 'yes'")
    page.select_option("#repository", "echo")
    page.wait_for_selector("#versions:not([data-stale])")
    for version in (v1, v2):
        row = page.locator(f"#versions tr[data-version='{version}']")
        assert row.locator("td.time").inner_text().endswith(" UTC")
    page.fill("#name", NAME)
    page.check(f"#versions input[value='{v1}']")
    page.fill("#min_replicas", "3")
    page.fill("#max_replicas", "2")
    page.fill(".env-row[data-row='0'] input[name=env_name]", "GREETING")
    page.fill(".env-row[data-row='0'] input[name=env_value]", "hello")
    page.check(f"#secrets input[value='{SECRET}']")

    # a bad value is refused beside its field, and nothing is created
    page.click("#deploy-submit")
    assert page.inner_text("#error-max_replicas") == "min_replicas must not exceed max_replicas"
    assert page.get_attribute("#max_replicas", "aria-invalid") == "true"
    assert page.inner_text("#form-problem") == "Not deployed: see Max replicas below."
    assert page.input_value("#name") == NAME and page.input_value("#min_replicas") == "3"
    assert page.is_checked(f"#versions input[value='{v1}']")
    assert page.is_checked(f"#secrets input[value='{SECRET}']")
    assert NAME not in [d.name for d in client.list_deployments()]
    browser.shot("deploy-02-refused-beside-its-field")
    page.fill("#min_replicas", "1")
    page.fill("#max_replicas", "1")
    page.fill(".env-row[data-row='1'] input[name=env_name]", "1BAD")
    page.click("#deploy-submit")
    assert page.inner_text("#error-env-1-name") == "'1BAD' is not an env var name"
    assert page.locator(".field-error").count() == 1
    assert NAME not in [d.name for d in client.list_deployments()]
    page.fill(".env-row[data-row='1'] input[name=env_name]", "")

    # created, then followed live until green
    page.click("#deploy-submit")
    page.wait_for_url(f"{page_url}?notice=*")
    browser.shot("deploy-03-deploying")
    page.wait_for_selector("#serving-revision:text-is('r1')", timeout=120_000)
    assert page.inner_text("#live-status #status") == "running"
    browser.shot("deploy-04-green")
    dep = client.get_deployment(NAME)
    assert dep.status == "running"
    config = revision_config(client, "r1")
    assert config["envs"] == [{"name": "GREETING", "value": "hello"}]
    assert config["secrets"] == [SECRET] and config["access_authorization"] is False
    assert next(iter(config["services"].values()))["scaling"]["max_replicas"] == 1
    url = page.get_attribute("#endpoint-url", "href")
    assert url == dep.url
    said = httpx.post(f"{url}/environ", json={"name": "DEPLOY_KEY"}, timeout=30).json()
    assert said["env"] == SECRET_VALUE

    # "Try it": the service's Swagger UI, through the endpoint
    with page.context.expect_page() as opened:
        page.click("#try-it")
    swagger = opened.value
    swagger.wait_for_selector(".swagger-ui .opblock-summary-path[data-path='/echo']")
    assert swagger.url == f"{url}/"
    assert "/environ" in swagger.locator(".opblock-summary-path").all_inner_texts()
    Browser(swagger).shot("deploy-05-try-it-swagger-ui")
    swagger.close()

    # "Update": the same form, filled; a new env, the next version, authorized access
    page.click("#update-button")
    page.wait_for_url(f"{page_url}/update")
    assert page.input_value("#name") == NAME and page.get_attribute("#name", "readonly") == ""
    assert page.is_disabled("#cluster")
    assert page.input_value(".env-row[data-row='0'] input[name=env_value]") == "hello"
    assert page.is_checked(f"#versions input[value='{v1}']")
    assert page.is_checked(f"#secrets input[value='{SECRET}']")
    assert page.locator(f"#versions tr[data-version='{v1}'] .tag").inner_text() == "deployed"
    page.click("#add-env")
    page.wait_for_selector("#env-rows .env-row:nth-child(3)")
    page.fill("#env-rows .env-row:nth-child(3) input[name=env_name]", "NEW_ENV")
    page.fill("#env-rows .env-row:nth-child(3) input[name=env_value]", "2")
    page.check(f"#versions input[value='{v2}']")
    page.check("input[name=access][value=authorized]")
    browser.shot("deploy-06-update-form")
    page.click("#deploy-submit")
    page.wait_for_url(f"{page_url}?notice=*")
    page.wait_for_selector("#serving-revision:text-is('r2')", timeout=120_000)
    assert page.inner_text("#live-status #status") == "running"
    config = revision_config(client, "r2")
    assert config["envs"] == [
        {"name": "GREETING", "value": "hello"},
        {"name": "NEW_ENV", "value": "2"},
    ]
    assert config["secrets"] == [SECRET] and config["access_authorization"] is True
    assert client.get_deployment(NAME).bento == f"echo:{v2}"

    # an authorized endpoint answers only with the token, or to the browser "Try it" opened
    assert httpx.get(f"{url}/", timeout=30).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    said = httpx.post(f"{url}/environ", json={"name": "NEW_ENV"}, headers=bearer, timeout=30)
    assert said.json()["env"] == "2"
    href = page.get_attribute("#try-it", "href") or ""
    assert href.startswith(f"{url}/?bentoship_try=")
    forged = href[:-4] + ("0000" if not href.endswith("0000") else "1111")
    assert httpx.get(forged, timeout=30).status_code == 401
    with page.context.expect_page() as opened:
        page.click("#try-it")
    swagger = opened.value
    swagger.wait_for_selector(".swagger-ui .opblock-summary-path[data-path='/echo']")
    assert swagger.url == f"{url}/", "the ticket leaves the address once traded"
    held = [c for c in page.context.cookies() if c["name"].startswith("bentoship_try_")]
    assert [c["name"] for c in held] == [f"bentoship_try_{NAME.replace('-', '_')}"]
    assert held[0]["httpOnly"] is True
    swagger.close()
    browser.shot("deploy-07-updated")
    assert browser.dialogs == []
