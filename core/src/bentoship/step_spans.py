"""Spans of the pipeline steps themselves (deploy, wait, smoke test, shadow, promote), so a
retrain-and-ship run is a trace beside the requests it ships.

With the OpenTelemetry SDK installed (the ``tracing`` extra, or bentoml's own), each traced
step is a span exported over OTLP/HTTP: to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``) when set, else to the control plane's own
receiver, filed under the deployment. A step continues the run's trace when the environment
carries one (``TRACEPARENT``, as CI tools and orchestrators set it; or the current span, such as
Airflow's task span when its OpenTelemetry is on), and carries the run's id as an attribute
otherwise. ``BENTOSHIP_STEP_SPANS=0`` turns it off. Without the SDK, steps run untraced.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

__all__ = ["run_id", "step_span", "traced_step"]

log = logging.getLogger("bentoship.steps")

F = TypeVar("F", bound=Callable[..., Any])
RUN_ID_VARIABLES = (
    "AIRFLOW_CTX_DAG_RUN_ID",
    "KFP_RUN_ID",
    "FLYTE_INTERNAL_EXECUTION_ID",
    "BENTOSHIP_RUN_ID",
)
_providers: dict[tuple[str, str], Any] = {}


def run_id() -> str | None:
    """The orchestrator run's id, from the environment its task runs in."""
    return next((os.environ[n] for n in RUN_ID_VARIABLES if os.environ.get(n)), None)


def _tracer(deployment: str, endpoint: str | None, token: str | None) -> Any:
    if os.environ.get("BENTOSHIP_STEP_SPANS", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return None
    target = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not target and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        target = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    headers: dict[str, str] | None = None
    if not target:
        if not endpoint or not token:
            return None
        target = f"{endpoint.rstrip('/')}/v1/traces"
        headers = {"Authorization": f"Bearer {token}", "X-Bentoship-Deployment": deployment}
    key = (target, deployment)
    provider = _providers.get(key)
    if provider is None:
        provider = TracerProvider(resource=Resource.create({"service.name": "bentoship-steps"}))
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=target, headers=headers))
        )
        atexit.register(provider.shutdown)
        _providers[key] = provider
    return provider.get_tracer("bentoship.steps")


def _parent() -> Any:
    """The context a step's span continues: the current span's, else ``TRACEPARENT``'s."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if trace.get_current_span().get_span_context().is_valid:
        return None
    carrier = os.environ.get("TRACEPARENT")
    if not carrier:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": carrier})


@contextlib.contextmanager
def step_span(step: str, deployment: str, client: Any = None, **attributes: Any) -> Iterator[None]:
    """Run the body as the span ``bentoship.<step>`` of ``deployment``, when spans are on."""
    endpoint = token = None
    if client is not None:
        endpoint, token = client.endpoint, client.connection.token
    else:
        try:
            from .connection import resolve_connection

            connection = resolve_connection()
            endpoint, token = connection.endpoint, connection.token
        except Exception:  # no connection here: spans can still go to an OTLP endpoint
            endpoint = token = None
    tracer = _tracer(deployment, endpoint, token)
    if tracer is None:
        yield
        return
    from opentelemetry.trace import Status, StatusCode

    values = {"bentoship.deployment": deployment, "bentoship.step": step}
    values |= {f"bentoship.{k}": str(v) for k, v in attributes.items() if v is not None}
    if run_id():
        values["bentoship.run_id"] = str(run_id())
    with tracer.start_as_current_span(
        f"bentoship.{step}", context=_parent(), attributes=values
    ) as span:
        try:
            yield
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
            raise


def traced_step(step: str) -> Callable[[F], F]:
    """Make a step function a span: its deployment is its first argument (a name or a
    rollout), its client the ``client`` keyword, if given. Steps called inside it (``ship``'s)
    are its children, in its trace."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            target = args[0] if args else kwargs.get("target", kwargs.get("name"))
            deployment = _deployment_of(target)
            if deployment is None:
                return function(*args, **kwargs)
            with step_span(step, deployment, kwargs.get("client")):
                return function(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def _deployment_of(target: Any) -> str | None:
    if isinstance(target, str) and not target.lstrip().startswith("{"):
        return target
    try:
        from .models import Rollout

        return Rollout.parse(target).name
    except Exception:  # not a rollout: the step itself says what is wrong
        return None
