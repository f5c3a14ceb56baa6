"""The route table's entry: one HTTP route, matched by HttpApi and described by the OpenAPI document.

A path template reads ``/v2/models/{name}[/versions/{version}]/infer``: ``{x}`` is one path segment
(matched percent-encoded, decoded by HttpApi), ``[...]`` an optional part. The same template gives
the regular expression the router matches and the paths the OpenAPI document lists, so the contract
cannot drift from what is served.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

Handler = Callable[..., Awaitable[tuple[int, dict[str, str], bytes]]]
ACCESS = ("public", "tenant", "admin", "viewer")
_PART = re.compile(r"\{(\w+)\}|\[|\]|[^{}\[\]]+")


def _regex(template: str, enums: dict[str, tuple[str, ...]]) -> str:
    out = []
    for m in _PART.finditer(template):
        tok, name = m.group(0), m.group(1)
        if name:
            out.append("(" + "|".join(map(re.escape, enums[name])) + ")" if name in enums else "([^/]+)")
        else:
            out.append("(?:" if tok == "[" else ")?" if tok == "]" else re.escape(tok))
    return "".join(out)


def _expand(template: str) -> list[str]:
    """Every concrete path of a template: each optional part present or absent."""
    parts = re.split(r"(\[[^\]]*\])", template)
    options = [[p[1:-1], ""] if p.startswith("[") else [p] for p in parts]
    return ["".join(c) for c in itertools.product(*options)]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    # public | tenant (an API key when auth requires one) | admin | viewer (admin, or a tenant's key:
    # the handler gets ``viewer``, the tenant whose data alone it may show, None for an admin)
    access: str = "public"
    summary: str = ""
    # OpenAPI: the JSON request body's schema name (components), "binary" for raw bytes, None for none;
    # the 2xx response's status, schema name and content types; extra query parameters.
    request: str | None = None
    response: str = "Object"
    status: int = 200
    content: tuple[str, ...] = ("application/json",)
    query: tuple[tuple[str, str], ...] = ()  # (name, description)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # path parameter -> its allowed values
    # The handler tells who calls itself (a tenant or the admin; e.g. the jobs API), from the headers
    # and ``client_host`` it is given; ``access`` then only documents the route.
    caller: bool = False
    # A "tenant" route whose calls take the tenant's rate token and in-flight slot before the body is
    # read (refused calls are held, then 429): infer, and the jobs submission, so a flood of jobs
    # costs a key its own quota.
    admitted: bool = False
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.access not in ACCESS:
            raise ValueError(f"route access must be one of {ACCESS}, got {self.access!r}")
        object.__setattr__(self, "pattern", re.compile(_regex(self.template, self.enums)))

    def paths(self) -> list[str]:
        return _expand(self.template)

    def parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.template)
