"""What a ledger transaction's reference points at, said for people: "Deployment #12 (job)" with a
link, not "hold 31" or "lease 7".

The ledger only knows (reference_type, reference_id) pairs. Billing names its own (holds, which
it follows to what they were placed for; top-ups; reversals); higher apps register a describer for
theirs (marketplace: deployments and leases) through `register_reference_describer`, so billing
never imports them. One query per reference type per page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.urls import reverse


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
    from billing.models import Hold

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
