"""BentoCloud's list filter: ``q`` (``label:key=value``, ``is:…``, free text) and ``search``.

bentoml's CLI sends ``--label team=x`` as ``q=label:team=x`` and ``--search`` as ``search``.
Every term must hold: each label must be present with that value (``label:key`` alone: present
with any value), and each free word must appear in the name. ``is:`` and other ``key:value``
terms the local control plane has nothing to filter by (``is:dev``) match everything.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import Invalid
from .params import MAX_QUERY_CHARACTERS, VersionListParams

__all__ = ["ListFilter"]


@dataclass(frozen=True)
class ListFilter:
    labels: dict[str, str | None] = field(default_factory=dict)
    words: tuple[str, ...] = ()

    @classmethod
    def parse(cls, q: str, search: str = "") -> ListFilter:
        if len(q) + len(search) > MAX_QUERY_CHARACTERS:
            raise Invalid(
                f"q and search together must stay under {MAX_QUERY_CHARACTERS} characters"
            )
        try:
            terms = shlex.split(q)
        except ValueError:
            terms = q.split()
        labels: dict[str, str | None] = {}
        words = [w for w in search.split() if w]
        for term in terms:
            kind, colon, rest = term.partition(":")
            if colon and kind == "label":
                key, equals, value = rest.partition("=")
                labels[key] = value if equals else None
            elif colon and kind.isidentifier():
                continue
            else:
                words.append(term)
        return cls(labels, tuple(words))

    @classmethod
    def of(cls, params: VersionListParams) -> ListFilter:
        return cls.parse(params.q, params.search)

    def matches(self, name: str, labels: Iterable[dict[str, str]]) -> bool:
        have = {str(item.get("key")): str(item.get("value", "")) for item in labels}
        for key, value in self.labels.items():
            if key not in have or (value is not None and have[key] != value):
                return False
        return all(word in name for word in self.words)
