"""What a ledger transaction's reference points at, said for people: "Deployment #12 (job)" with a
link, not "hold 31" or "lease 7"; and what the transaction did, in the account holder's words:
"Held $0.01 more for Deployment #8 (job)", not "hold #3 swapped for hold #4".

The ledger only knows (reference_type, reference_id) pairs. Billing names its own (holds, which
it follows to what they were placed for; top-ups; reversals); higher apps register a describer for
theirs (marketplace: deployments and leases) through `register_reference_describer`, so billing
never imports them. One query per reference type per page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from django.urls import reverse

from billing.models import Hold, TransactionKind
from core.money import format_usd


@dataclass(frozen=True)
class Reference:
    label: str
    url: str | None = None


# (reference ids of one type, the user looking) -> {reference id: Reference}. Ids it does not
# know, or that the user may not see, are left out and shown as the raw pair.
Describer = Callable[[list[str], object], dict[str, Reference]]
_describers: dict[str, Describer] = {}


def register_reference_describer(reference_type: str, describer: Describer) -> None:
    _describers[reference_type] = describer


def _holds(ids: list[str], user) -> dict[str, Reference]:
    """A hold reads as what it was placed for (a deployment's hold, a lease's hold)."""

    holds = Hold.objects.filter(id__in=[int(i) for i in ids if i.isdigit()], user=user)
    targets = {
        str(h.id): (h.reference_type, h.reference_id) for h in holds.only("id", "reference_type", "reference_id")
    }
    described = describe_references(targets.values(), user=user, follow_holds=False)
    return {hold_id: described[target] for hold_id, target in targets.items() if target in described}


def _topups(ids: list[str], user) -> dict[str, Reference]:
    return {i: Reference(f"Top-up #{i}", reverse("billing_topup_status", args=[int(i)])) for i in ids if i.isdigit()}


def _reversals(ids: list[str], user) -> dict[str, Reference]:
    return {i: Reference(f"Reverses transaction #{i}") for i in ids}


def _users(ids: list[str], user) -> dict[str, Reference]:
    return {i: Reference("Your account") for i in ids if i == str(getattr(user, "pk", None))}


_OWN: dict[str, Describer] = {
    "hold": _holds,
    "topup": _topups,
    "ledger_transaction": _reversals,
    "user": _users,
}


def describe_references(
    pairs: Iterable[tuple[str, str]], *, user, follow_holds: bool = True
) -> dict[tuple[str, str], Reference]:
    """{(reference_type, reference_id): Reference} for the pairs this module or an app can name."""
    by_type: dict[str, set[str]] = {}
    for reference_type, reference_id in pairs:
        by_type.setdefault(reference_type, set()).add(str(reference_id))
    described: dict[tuple[str, str], Reference] = {}
    for reference_type, ids in by_type.items():
        if reference_type == "hold" and not follow_holds:
            continue
        describer = _describers.get(reference_type) or _OWN.get(reference_type)
        if describer is None:
            continue
        for reference_id, reference in describer(sorted(ids), user).items():
            described[(reference_type, reference_id)] = reference
    return described


def with_references(rows: list[dict], *, user) -> list[dict]:
    """Rows with reference_type/reference_id gain `reference` (a Reference, or None)."""
    described = describe_references(((row["reference_type"], row["reference_id"]) for row in rows), user=user)
    return [{**row, "reference": described.get((row["reference_type"], str(row["reference_id"])))} for row in rows]


# --- What a transaction did, in words --------------------------------------------------------------

# Stripe's ids in a card top-up's memo ("Card top-up #5 (evt_1Nx…)") mean nothing to its holder.
_STRIPE_IDS = re.compile(r"\s*\((?:evt|pi|ch|re|dp|du)_[A-Za-z0-9_]+\)")


def _money(micros: int) -> str:
    return format_usd(abs(micros), places=6)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def transaction_description(row: dict, reference: Reference | None = None) -> str:
    """What a transaction did to the user's funds, said as they would say it.

    `row` is a `billing.statements.transaction_list` row (kind, memo, and the signed change of the
    user's available and reserved credits); `reference` what it was for (`describe_references`).
    Memos billing writes for itself (holds, swaps, charges) are rewritten from the amounts; memos a
    person typed (adjustments, reversals) and top-up memos are shown as written, less Stripe's ids.
    """
    kind, memo = row["kind"], row.get("memo") or ""
    available, reserved = row.get("available") or 0, row.get("reserved") or 0
    target = f" for {reference.label}" if reference else ""
    if kind == "hold_place":
        held = _money(reserved or available)
        if memo.startswith("Hold extended"):
            return f"Held {held} more{target} to cover the next hour"
        if memo.startswith("Monthly reservation"):
            return f"Held {held}{target}: {_lower_first(memo)}"
        return f"Held {held}{target} until it is used; what is not used comes back"
    if kind == "hold_swap":
        # A deployment's worst-case hold became its lease's hold at the node's locked price.
        if available < 0:
            return f"Held {_money(available)} more{target}"
        if available > 0:
            back = f"{_money(available)} of what was held{target} back in your balance"
            return f"{back}: its node costs less than your maximum price"
        return f"The hold{target} now covers the node it runs on"
    if kind == "hold_release":
        return f"{_money(available or reserved)} held{target} and not used, back in your balance"
    if kind == "hold_capture" and reserved:
        charged = f"Charged {_money(reserved)}{target}"
        if memo.startswith("Usage until close: "):
            return f"{charged}: usage until close ({memo.removeprefix('Usage until close: ')})"
        return f"{charged}: {_lower_first(memo)}" if memo else charged
    cleaned = _STRIPE_IDS.sub("", memo).strip()
    if cleaned:
        return cleaned

    return dict(TransactionKind.choices).get(kind, kind)


def describe_transactions(rows: list[dict], *, user) -> list[dict]:
    """`with_references`, and each row's `description` (`transaction_description`)."""
    return [
        {**row, "description": transaction_description(row, row["reference"])}
        for row in with_references(rows, user=user)
    ]


def describe_transactions_iter(rows: Iterable[dict], *, user, batch: int = 500) -> Iterator[dict]:
    """`describe_transactions` over a stream (the CSV export), a batch of rows at a time."""
    rows = iter(rows)
    while chunk := list(islice(rows, batch)):
        yield from describe_transactions(chunk, user=user)
