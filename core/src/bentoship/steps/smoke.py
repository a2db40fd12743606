"""The smoke-test step: call one API of the deployment and check the answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .._http import tls_context
from ..client import Client
from ..errors import InvalidRequestError, SmokeTestFailed
from ..models import Rollout, RolloutLike, rollout_target
from ..step_spans import traced_step

__all__ = ["SmokeTest", "smoke_test"]

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class SmokeTest:
    """An API call and what its answer must be: ``expected`` (equal) and/or ``check`` (true).

    With ``min_match`` below 1 and a list as ``expected``, that share of the answer's items
    must equal the expected items, position by position: with labelled holdout rows as the
    payload, it is a minimum accuracy (a quality gate that needs no callable).
    """

    api: str
    payload: Any = field(default_factory=dict)
    expected: Any = None
    check: Check | None = None
    method: str = "POST"
    timeout: float = 30.0
    min_match: float = 1.0

    def __post_init__(self) -> None:
        if self.min_match < 1.0 and not (isinstance(self.expected, list) and self.expected):
            raise InvalidRequestError("min_match below 1 needs a non-empty list as expected")


def _matching_share(answer: Any, expected: list[Any]) -> float:
    if not isinstance(answer, list) or len(answer) != len(expected):
        return 0.0
    return sum(int(a == b) for a, b in zip(answer, expected, strict=True)) / len(expected)


def _endpoint(
    target: RolloutLike, client: Client | None, endpoint: str | None, api_token: str | None
) -> tuple[str, str]:
    resolved = rollout_target(target)
    if isinstance(resolved, Rollout):
        return resolved.name, resolved.url
    if resolved.startswith(("http://", "https://")):
        return resolved, resolved
    if client is not None:
        return resolved, client.get_deployment(resolved).url
    with Client(endpoint or None, api_token or None) as own:
        return resolved, own.get_deployment(resolved).url


@traced_step("smoke_test")
def smoke_test(
    target: RolloutLike,
    test: SmokeTest,
    *,
    token: str | None = None,
    client: Client | None = None,
    endpoint: str | None = None,
    api_token: str | None = None,
) -> Any:
    """Call ``test.api`` on the deployment (a Rollout as object, dict or JSON, a name or a URL).

    Returns the decoded answer; raises SmokeTestFailed when the call fails or the answer is
    wrong. ``token`` is sent as ``Authorization: Bearer`` for deployments with access
    authorization. A deployment given by name is looked up with ``client``, else with a client
    for ``endpoint`` and ``api_token`` (each defaulting as :class:`Client` does); a Rollout or a
    URL needs no API call.
    """
    name, base = _endpoint(target, client, endpoint, api_token)
    url = f"{base.rstrip('/')}/{test.api.lstrip('/')}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    hint = f"check the service with `bentoship logs {name}`"
    try:
        response = httpx.request(
            test.method,
            url,
            json=test.payload,
            headers=headers,
            timeout=test.timeout,
            verify=tls_context(trust_env=True),
        )
    except httpx.HTTPError as exc:
        raise SmokeTestFailed(
            f"smoke test could not call {url}: {type(exc).__name__}; {hint}"
        ) from None
    if response.status_code != 200:
        body = " ".join(response.text.split())[:200]
        raise SmokeTestFailed(
            f"smoke test {test.method} {url} answered HTTP {response.status_code}: {body}; {hint}"
        )
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if test.min_match < 1.0:
        share = _matching_share(answer, test.expected)
        if share < test.min_match:
            raise SmokeTestFailed(
                f"smoke test {url}: {share:.2f} of the answer matches the expected items, "
                f"below {test.min_match:g}; {hint}"
            )
    elif test.expected is not None and answer != test.expected:
        raise SmokeTestFailed(
            f"smoke test {url} answered {str(answer)[:200]}, expected {str(test.expected)[:200]}"
        )
    if test.check is not None and not test.check(answer):
        name_of_check = getattr(test.check, "__name__", "check")
        raise SmokeTestFailed(
            f"smoke test {url} answer failed {name_of_check}: {str(answer)[:200]}; {hint}"
        )
    return answer
