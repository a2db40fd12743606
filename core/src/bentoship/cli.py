"""The ``bentoship`` command line: exit 0 when it worked, 1 when it failed, 2 for bad usage."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BentoshipError, ConfigError, InvalidRequestError

if TYPE_CHECKING:
    from .client import Client
    from .models import DeploymentInfo

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value}")
    return number


def _pair(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {value[:80]}") from None


def _add_server(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .server.options import add_arguments

    server = subparsers.add_parser(
        "server", help="run the local control plane (a BentoCloud-compatible server)"
    )
    add_arguments(server)


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint", help="API endpoint (default $BENTO_CLOUD_API_ENDPOINT, else connection.json)"
    )
    parser.add_argument(
        "--token", help="API token (default $BENTO_CLOUD_API_KEY, else connection.json)"
    )


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instance-type", help="instance type, e.g. cpu.small")
    parser.add_argument("--min-replicas", type=int)
    parser.add_argument("--max-replicas", type=int)
    parser.add_argument("--env", type=_pair, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="NAME",
        help="a secret (bentoml secret create) the deployment gets; repeat for more",
    )
    parser.add_argument("--label", type=_pair, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--access-authorization", action="store_true", help="require a bearer token on the endpoint"
    )
    parser.add_argument("--timeout", type=_positive, default=600.0, help="seconds to wait (600)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bentoship", description="Ship BentoML services from ML pipelines."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_server(subparsers)

    build = subparsers.add_parser(
        "build", help="build the Bento of a project directory; prints only its tag"
    )
    build.add_argument("project_dir", type=Path, help="the project (holds bentofile.yaml)")
    build.add_argument(
        "--version",
        help="bento version (default: a new one); the same inputs again reuse that bento",
    )
    build.add_argument("--label", type=_pair, action="append", default=[], metavar="KEY=VALUE")
    build.add_argument(
        "--model",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an exported model to import first (repeatable)",
    )
    build.add_argument("--export", type=Path, metavar="PATH", help="also write a .bento archive")
    push = subparsers.add_parser(
        "push", help="upload a bento tag or an exported .bento file; prints only the tag"
    )
    push.add_argument("bento", help="bento tag, or an exported .bento file")
    push.add_argument("--force", action="store_true", help="upload even if the server has it")
    _add_connection(push)

    ship = subparsers.add_parser(
        "ship",
        help="push, deploy a candidate, smoke-test it, promote (or canary); discard on failure",
    )
    deploy = subparsers.add_parser("deploy", help="create or update a deployment")
    for sub in (ship, deploy):
        sub.add_argument("name", help="deployment name")
        sub.add_argument("bento", help="bento tag, or an exported .bento file (ship only)")
        _add_config(sub)
        _add_connection(sub)
    ship.add_argument("--smoke-api", help="API to call after the rollout, e.g. predict")
    ship.add_argument(
        "--smoke-payload", type=_json, default={}, help="JSON body for the smoke test"
    )
    ship.add_argument("--smoke-expect", type=_json, help="JSON the smoke test must answer")
    ship.add_argument(
        "--no-verify",
        action="store_true",
        help="deploy straight to the endpoint (no candidate); roll back on failure",
    )
    ship.add_argument(
        "--canary",
        type=_json,
        metavar="JSON",
        help="canary analysis after the smoke test, e.g. '{\"steps\": [10, 50, 100]}'",
    )
    ship.add_argument(
        "--shadow",
        type=_json,
        metavar="JSON",
        help="shadow analysis after the smoke test (mirrored live requests, answers compared), "
        'e.g. \'{"min_pairs": 200, "min_agreement": 0.95}\'',
    )
    deploy.add_argument("--wait", action="store_true", help="wait until the rollout is ready")
    deploy.add_argument(
        "--candidate",
        action="store_true",
        help="hold the new revision on the candidate URL until `bentoship promote`",
    )

    status = subparsers.add_parser("status", help="show one deployment, or all of them")
    status.add_argument("name", nargs="?")
    wait = subparsers.add_parser("wait", help="wait until a deployment is ready")
    wait.add_argument("name")
    wait.add_argument("--timeout", type=_positive, default=600.0)
    rollback = subparsers.add_parser("rollback", help="return to the previous good revision")
    rollback.add_argument("name")
    rollback.add_argument("--to", dest="revision", help="revision name (r2) or uid")
    rollback.add_argument("--no-wait", action="store_true")
    rollback.add_argument(
        "--force",
        action="store_true",
        help="roll back to a revision that never served (failed or discarded as a candidate)",
    )
    rollback.add_argument("--timeout", type=_positive, default=600.0)
    promote = subparsers.add_parser("promote", help="switch the endpoint to the candidate")
    promote.add_argument("name")
    promote.add_argument("--revision", help="the candidate's name (r3): promote only that one")
    promote.add_argument("--timeout", type=_positive, default=600.0)
    discard = subparsers.add_parser("discard", help="stop the candidate; the endpoint is kept")
    discard.add_argument("name")
    canary = subparsers.add_parser("canary", help="give the candidate a share of the endpoint")
    canary.add_argument("name")
    canary.add_argument("weight", type=int, help="percent of the endpoint's requests (0-100)")
    canary.add_argument("--route-type", choices=("random", "header", "query"), default="random")
    canary.add_argument("--route-by", help="the header or query parameter to hash (sticky)")
    shadow = subparsers.add_parser(
        "shadow",
        help="mirror a share of the endpoint's requests to the candidate; show the comparison",
    )
    shadow.add_argument("name")
    shadow.add_argument(
        "--percent",
        type=int,
        help="percent of the endpoint's requests to mirror (0 stops); without it, show only",
    )
    shadow.add_argument(
        "--apis", help="comma-separated APIs to mirror, e.g. predict (default: every API)"
    )
    shadow.add_argument("--json", action="store_true", help="print the figures as JSON")
    approvals = subparsers.add_parser(
        "approvals", help="list the approvals of a deployment (or those pending everywhere)"
    )
    approvals.add_argument("name", nargs="?")
    approve = subparsers.add_parser("approve", help="approve the held candidate: promote it")
    reject = subparsers.add_parser("reject", help="reject the held candidate: discard it")
    for sub in (approve, reject):
        sub.add_argument("name")
        sub.add_argument("--comment", default="", help="why (it goes into the events)")
        sub.add_argument("--id", dest="approval", help="the approval (default: the pending one)")
    revisions = subparsers.add_parser("revisions", help="list a deployment's revisions")
    revisions.add_argument("name")
    logs = subparsers.add_parser(
        "logs", help="print a deployment's logs: search them, or follow them live"
    )
    logs.add_argument("name")
    logs.add_argument("--revision", help="only this revision's lines (r3)")
    logs.add_argument("--since", help="from: epoch seconds, ISO-8601, or a time ago (10m, 2h)")
    logs.add_argument("--until", help="up to (same forms as --since)")
    logs.add_argument("--grep", metavar="RE", help="only lines matching this RE2 pattern")
    logs.add_argument(
        "--tail", "--limit", dest="limit", type=int, default=200, help="the last N lines"
    )
    logs.add_argument("-f", "--follow", action="store_true", help="then print new lines live")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    events = subparsers.add_parser("events", help="print what happened to a deployment")
    events.add_argument("name")
    events.add_argument("--since", help="from: epoch seconds, ISO-8601, or a time ago (1h)")
    events.add_argument("--json", action="store_true", help="one JSON object per event")
    for sub in (
        status,
        wait,
        rollback,
        promote,
        discard,
        canary,
        shadow,
        approvals,
        approve,
        reject,
        revisions,
        logs,
        events,
    ):
        _add_connection(sub)
    return parser


def _client(args: argparse.Namespace) -> Client:
    from .client import Client
    from .connection import resolve_connection

    return Client.from_connection(
        resolve_connection(args.endpoint, args.token, token_source="the --token flag")
    )


def _config(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "instance_type": args.instance_type,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "envs": dict(args.env),
        "secrets": list(args.secret),
        "labels": dict(args.label),
        "access_authorization": args.access_authorization,
    }


def _progress(name: str) -> Callable[[DeploymentInfo], None]:
    started = time.monotonic()
    last: list[str] = []

    def show(dep: DeploymentInfo) -> None:
        if not last or last[-1] != dep.status:
            last.append(dep.status)
            elapsed = time.monotonic() - started
            print(f"{name}: {dep.status} ({elapsed:.1f} s)", file=sys.stderr, flush=True)

    return show


def _shown_bento(dep: DeploymentInfo) -> str:
    """The bento that serves; the target's where the server does not say (or none serves)."""
    return dep.serving_bento or dep.bento


def _print_deployment(dep: DeploymentInfo) -> None:
    print(
        json.dumps(
            {
                "name": dep.name,
                "status": dep.status,
                "url": dep.url,
                "bento": _shown_bento(dep),
                "target_revision": dep.target_revision,
                "target_bento": dep.bento,
                "serving_revision": dep.serving_revision,
                "candidate_revision": dep.candidate_revision,
                "candidate_bento": dep.candidate_bento or None,
                "candidate_url": dep.candidate_url or None,
                "canary": dep.canary,
                "reason": dep.reason,
                "replicas": asdict(dep.replicas) if dep.replicas else None,
            },
            indent=2,
        )
    )


def _run_server(args: argparse.Namespace) -> int:
    from .extras import require

    require("starlette", feature="bentoship server", extra="server")
    from .server import run_server
    from .server.options import settings_values

    run_server(**settings_values(args))
    return EXIT_OK


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what a step prints to stderr, so that stdout holds only the command's answer.

    That covers bentoml, the project's own modules and the tools bentoml runs (``uv``), so
    ``tag=$(bentoship build .)`` gets the tag alone.
    """
    sys.stdout.flush()
    try:  # without file descriptors 1 and 2, only Python's own output is redirected
        saved = os.dup(1)
    except OSError:
        saved = -1
    else:
        try:
            os.dup2(2, 1)
        except OSError:
            os.close(saved)
            saved = -1
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if saved >= 0:
            sys.stderr.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _run_build(args: argparse.Namespace) -> int:
    from .steps import build

    with _stdout_to_stderr():
        tag = build(
            args.project_dir,
            version=args.version,
            labels=dict(args.label),
            models=args.model,
            export_path=args.export,
        )
    print(tag)
    return EXIT_OK


def _run_push(args: argparse.Namespace) -> int:
    from .steps import push

    with _client(args) as client, _stdout_to_stderr():
        tag = push(args.bento, client=client, force=args.force)
    print(tag)
    return EXIT_OK


def _run_ship(args: argparse.Namespace) -> int:
    from .steps import SmokeTest, ship

    smoke = None
    if args.smoke_api:
        smoke = SmokeTest(
            api=args.smoke_api, payload=args.smoke_payload, expected=args.smoke_expect
        )
    with _client(args) as client:
        rollout = ship(
            args.name,
            args.bento,
            _config(args),
            smoke=smoke,
            canary=args.canary,
            shadow=args.shadow,
            verify=not args.no_verify,
            client=client,
            timeout=args.timeout,
        )
    print(rollout.to_json())
    return EXIT_OK


def _run_deploy(args: argparse.Namespace) -> int:
    from .steps import deploy, wait_until_ready

    with _client(args) as client:
        rollout = deploy(
            args.name, args.bento, _config(args), candidate=args.candidate, client=client
        )
        if args.wait:
            wait_until_ready(
                rollout, client=client, timeout=args.timeout, on_status=_progress(args.name)
            )
    print(rollout.to_json())
    return EXIT_OK


def _run_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.name:
            _print_deployment(client.get_deployment(args.name))
        else:
            for dep in client.list_deployments():
                line = f"{dep.name}\t{dep.status}\t{_shown_bento(dep)}\t{dep.url}"
                if dep.candidate_revision:
                    held = " ".join(filter(None, (dep.candidate_revision, dep.candidate_bento)))
                    line += f"\tcandidate {held}"
                print(line)
    return EXIT_OK


def _run_wait(args: argparse.Namespace) -> int:
    from .steps import wait_until_ready

    with _client(args) as client:
        dep = wait_until_ready(
            args.name, client=client, timeout=args.timeout, on_status=_progress(args.name)
        )
    _print_deployment(dep)
    return EXIT_OK


def _run_rollback(args: argparse.Namespace) -> int:
    from .steps import rollback

    with _client(args) as client:
        dep = rollback(
            args.name,
            revision=args.revision,
            client=client,
            wait=not args.no_wait,
            timeout=args.timeout,
            force=args.force,
        )
    if dep is not None:
        _print_deployment(dep)
    return EXIT_OK


def _run_promote(args: argparse.Namespace) -> int:
    from .steps import promote, wait_until_ready

    with _client(args) as client:
        if args.revision:
            client.promote(args.name, args.revision)
        else:
            promote(args.name, client=client, timeout=args.timeout)
        _print_deployment(wait_until_ready(args.name, client=client, timeout=args.timeout))
    return EXIT_OK


def _run_discard(args: argparse.Namespace) -> int:
    from .steps import discard

    with _client(args) as client:
        discard(args.name, client=client)
        _print_deployment(client.get_deployment(args.name))
    return EXIT_OK


def _run_canary(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_deployment(client.set_canary(args.name, args.weight, args.route_type, args.route_by))
    return EXIT_OK


def _run_shadow(args: argparse.Namespace) -> int:
    apis = [api.strip() for api in args.apis.split(",") if api.strip()] if args.apis else None
    with _client(args) as client:
        if args.percent is not None:
            figures = client.set_shadow(args.name, args.percent, apis)
        else:
            figures = client.shadow(args.name)
    if args.json:
        print(json.dumps(figures, indent=2))
        return EXIT_OK
    print(describe_shadow(figures))
    return EXIT_OK


def describe_shadow(figures: dict[str, Any]) -> str:
    """The mirroring's state and the comparison so far, in a few lines."""
    name = figures["deployment"]
    if not figures.get("active"):
        return f"{name}: nothing is mirrored (start with `bentoship shadow {name} --percent 100`)"
    apis = ", ".join(figures["apis"]) if figures.get("apis") else "every API"
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(figures["dropped_by_reason"].items()))
    lines = [
        f"{name}: {figures['percent']}% of the requests to {apis} are mirrored from "
        f"{figures['serving']} to {figures['candidate']}",
        f"{figures['pairs']} pairs, {figures['dropped']} dropped"
        + (f" ({reasons})" if reasons else ""),
    ]
    if figures.get("report"):
        from .shadow import ShadowReport

        lines.append(ShadowReport.from_dict(figures["report"]).summary())
    return "\n".join(lines)


def _run_approvals(args: argparse.Namespace) -> int:
    with _client(args) as client:
        names = [args.name] if args.name else [d.name for d in client.list_deployments()]
        for name in names:
            for approval in client.approvals(name):
                if not args.name and approval["state"] != "pending":
                    continue
                who = f" by {approval['decided_by']}" if approval.get("decided_by") else ""
                print(
                    f"{name}\t{approval['id']}\t{approval['revision']}\t{approval['state']}{who}"
                    f"\t{approval['message']}"
                )
    return EXIT_OK


def _run_decide(args: argparse.Namespace) -> int:
    with _client(args) as client:
        decide = client.approve if args.command == "approve" else client.reject
        decided = decide(args.name, args.approval, args.comment)
    print(f"{args.name}: approval {decided['id']} of {decided['revision']} {decided['state']}")
    return EXIT_OK


def _run_revisions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for rev in client.list_revisions(args.name):
            marker = "*" if rev.serving else ("?" if rev.phase == "candidate" else " ")
            print(f"{marker} {rev.name}\t{rev.phase}\t{rev.bento}\t{rev.created_at}\t{rev.reason}")
    return EXIT_OK


def _run_logs(args: argparse.Namespace) -> int:
    search = {"since": args.since, "revision": args.revision, "pattern": args.grep}
    with _client(args) as client:
        if args.follow:
            if args.until:
                raise InvalidRequestError("--follow prints new lines as they come: drop --until")
            for entry in client.follow_logs(args.name, **search):
                print(json.dumps(asdict(entry)) if args.json else entry, flush=True)
            return EXIT_OK
        for entry in client.search_logs(args.name, until=args.until, limit=args.limit, **search):
            print(json.dumps(asdict(entry)) if args.json else entry)
    return EXIT_OK


def _run_events(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for event in client.events(args.name, since=args.since):
            print(json.dumps(asdict(event)) if args.json else event)
    return EXIT_OK


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "server": _run_server,
    "build": _run_build,
    "push": _run_push,
    "ship": _run_ship,
    "deploy": _run_deploy,
    "status": _run_status,
    "wait": _run_wait,
    "rollback": _run_rollback,
    "promote": _run_promote,
    "discard": _run_discard,
    "canary": _run_canary,
    "shadow": _run_shadow,
    "approvals": _run_approvals,
    "approve": _run_decide,
    "reject": _run_decide,
    "revisions": _run_revisions,
    "logs": _run_logs,
    "events": _run_events,
}


class _StepLog(logging.StreamHandler):  # type: ignore[type-arg]
    """The steps' log lines on whatever ``sys.stderr`` is when they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("bentoship: %(message)s"))

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _show_step_log() -> None:
    """What the steps log at INFO and above (a canary's figures, a rollback) goes to stderr."""
    steps = logging.getLogger("bentoship.steps")
    if not any(isinstance(handler, _StepLog) for handler in steps.handlers):
        steps.addHandler(_StepLog())
        steps.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_step_log()
    try:
        return HANDLERS[args.command](args)
    except (ConfigError, InvalidRequestError) as exc:
        print(f"bentoship: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BentoshipError as exc:
        print(f"bentoship: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
