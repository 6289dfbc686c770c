"""Pages of a list: ``?limit=&offset=&q=`` on every list route, the total in ``X-Total-Count``.

The lists are small catalogs (models, configurations, runs), so the route reads its rows as
before and the page is cut here; what ``q`` matches is each route's choice (names, topics,
statuses), case-insensitive. The web pages show "n of total" and page through with the header.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Response

T = TypeVar("T")

TOTAL = "X-Total-Count"
MAX_LIMIT = 1000

# What a list route answers besides its body: declared so generated clients know the header.
LISTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One page of the list (all of it without `limit`)",
        "headers": {TOTAL: {"description": "how many items match `q`, on every page", "schema": {"type": "integer"}}},
    }
}


@dataclass(frozen=True)
class PageParams:
    limit: int | None
    offset: int
    q: str | None


def page_params(
    limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="at most this many items")] = None,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1, description="skip this many matching items")] = 0,
    q: Annotated[str | None, Query(max_length=200, description="keep items whose text contains this")] = None,
) -> PageParams:
    return PageParams(limit=limit, offset=offset, q=q.strip().lower() if q and q.strip() else None)


PageDep = Annotated[PageParams, Depends(page_params)]


def paginate(response: Response, items: Sequence[T], params: PageParams, text: Callable[[T], str]) -> list[T]:
    """The items matching ``q``, cut to the page; their count goes into ``X-Total-Count``."""
    matching = [i for i in items if params.q is None or params.q in text(i).lower()]
    response.headers[TOTAL] = str(len(matching))
    end = None if params.limit is None else params.offset + params.limit
    return matching[params.offset : end]


def words(*parts: object) -> str:
    """The searchable text of an item: its fields joined."""
    return " ".join("" if p is None else str(p) for p in parts)
