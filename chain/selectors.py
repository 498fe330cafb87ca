"""Reads of the chain app: the enabled chains with their tokens, a user's deposits by cursor."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from accounts.models import User
from chain.models import Chain, ChainToken, Deposit
from core import cursors
from core.errors import ApplicationError


def chains_enabled() -> QuerySet[Chain]:
    tokens = ChainToken.objects.filter(enabled=True).order_by("id")
    return Chain.objects.filter(enabled=True).prefetch_related(Prefetch("tokens", queryset=tokens)).order_by("id")


@dataclass(frozen=True)
class DepositPage:
    rows: list[Deposit]
    next_cursor: str | None


def _cursor_id(cursor: str) -> int:
    data = cursors.cursor_fields(cursor, {"i"})
    if data is None or not cursors.is_row_id(data["i"]):
        raise ApplicationError(
            "Invalid input. cursor: not a cursor this API returned; start again without it.",
            {"field": "cursor", "errors": [{"field": "cursor", "message": "not a cursor this API returned"}]},
            status=422,
        )
    return data["i"]


def deposit_page(*, user: User, limit: int, cursor: str | None = None) -> DepositPage:
    """The user's deposits, newest first, by keyset on id."""
    rows = Deposit.objects.filter(user=user).select_related("chain", "token").order_by("-id")
    if cursor:
        rows = rows.filter(id__lt=_cursor_id(cursor))
    found = list(rows[: limit + 1])
    next_cursor = cursors.encode_cursor({"i": found[limit - 1].id}) if len(found) > limit else None
    return DepositPage(rows=found[:limit], next_cursor=next_cursor)
