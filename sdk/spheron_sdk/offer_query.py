"""Offer search queries in the grammar renters know from Vast.ai:

    gpu_model=rtx4090 vram>=24 region in [us-east,eu-west] uptime>0.98

Terms are `field op value`, joined by spaces (all must hold). Operators: = != < <= > >= in notin
(`in`/`notin` take a list `[a,b]`). Sort: `field` or `field+` ascending, `field-` or `-field`
descending. Each term narrows the server's search where GET /api/v1/offers has a filter for it
(`vram>=24` → `min_vram_gb=24`) and is then checked on every returned offer, so an operator the
API has no filter for (`price<1`, `region notin [...]`) is exact too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "in", "notin")
FieldType = Literal["str", "int", "float", "decimal"]


class QueryError(ValueError):
    """A query or sort the grammar does not accept; the message lists what it does."""


@dataclass(frozen=True)
class Field:
    name: str
    key: str | None  # the offer's key; None: only the server can test it
    type: FieldType
    help: str
    sort: str | None = None  # the API's sort key (ascending)
    descending_sort: str | None = None


FIELDS: dict[str, Field] = {
    field.name: field
    for field in (
        Field("gpu_model", "gpu_model", "str", "GPU model slug, e.g. rtx4090 (sphnctl market)"),
        Field("vram", "vram_gb", "int", "memory per GPU, GB", sort="vram", descending_sort="-vram"),
        Field("gpus", "available_gpus", "int", "free GPUs on the node"),
        Field("gpu_count", "gpu_count", "int", "GPUs on the node"),
        Field("region", "region", "str", "region code, e.g. us-east"),
        Field("continent", None, "str", "continent, e.g. europe (= only)"),
        Field("mode", "mode", "str", "fizz or provider"),
        Field("tier", "trust_tier", "int", "trust tier 1 (best) to 7"),
        Field("gpu_tier", "gpu_tier", "str", "GPU class"),
        Field("price", "price_per_hour", "decimal", "USD per hour, whole node", sort="price", descending_sort="-price"),
        Field("price_per_gpu", "price_per_gpu_hour", "decimal", "USD per GPU-hour"),
        Field("price_per_vram", "price_per_vram_gb_hour", "decimal", "USD per GB of VRAM-hour", sort="price_per_vram"),
        Field("uptime", "uptime_30d", "float", "30-day uptime, 0 to 1", sort="uptime", descending_sort="-uptime"),
        Field("cpu_cores", "cpu_cores", "int", "CPU cores"),
        Field("memory", "memory_gb", "int", "RAM, GB"),
        Field("storage", "storage_gb", "int", "disk, GB"),
        Field("bandwidth", "bandwidth_mbps", "int", "Mbit/s"),
        Field("provider", "provider", "str", "provider's display name"),
    )
}
ALIASES = {"gpu": "gpu_model", "gpu_name": "gpu_model", "vram_gb": "vram", "num_gpus": "gpus", "reliability": "uptime"}
ALIASES.update({"dph": "price", "price_per_hour": "price", "min_uptime": "uptime", "trust_tier": "tier"})

_TERM = re.compile(
    r"\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?P<op><=|>=|!=|==|=|<|>|[A-Za-z]+(?=\s)|[^\sA-Za-z0-9_\[\]\"']+)\s*"
    r"(?P<value>\[[^\]]*\]|\"[^\"]*\"|'[^']*'|[^\s\[\]]+)"
)


@dataclass(frozen=True)
class Term:
    field: Field
    op: str
    value: Any  # a scalar, or a tuple for in/notin

    def matches(self, offer: dict[str, Any]) -> bool:
        if self.field.key is None:
            return True  # the server applied it
        actual = _typed(self.field, offer.get(self.field.key))
        if actual is None:
            return False
        if self.op == "in":
            return actual in self.value
        if self.op == "notin":
            return actual not in self.value
        return {
            "=": actual == self.value,
            "!=": actual != self.value,
            "<": actual < self.value,
            "<=": actual <= self.value,
            ">": actual > self.value,
            ">=": actual >= self.value,
        }[self.op]


@dataclass(frozen=True)
class OfferQuery:
    terms: tuple[Term, ...]
    sort: str = "price"

    def params(self) -> dict[str, str]:
        """The server-side filters that narrow the search without losing a match."""
        params: dict[str, str] = {}
        for term in self.terms:
            for key, value in _server_params(term).items():
                params[key] = value
        if self.sort != "price":
            params["sort"] = self.sort
        return params

    def matches(self, offer: dict[str, Any]) -> bool:
        return all(term.matches(offer) for term in self.terms)


def field_help() -> str:
    return ", ".join(FIELDS)


def _field(name: str) -> Field:
    field = FIELDS.get(ALIASES.get(name.lower(), name.lower()))
    if field is None:
        raise QueryError(f"unknown field {name!r}; valid fields: {field_help()}")
    return field


def _typed(field: Field, raw: Any) -> Any:
    if raw is None:
        return None
    if field.type == "str":
        return str(raw).lower()
    if field.type == "int":
        return int(raw)
    if field.type == "float":
        return float(raw)
    return Decimal(str(raw))


def _value(field: Field, text: str) -> Any:
    text = text.strip().strip("'\"").strip()
    if not text:
        raise QueryError(f"{field.name}: a value is missing")
    try:
        if field.type == "int":
            return int(text)
        if field.type == "float":
            return float(text)
        if field.type == "decimal":
            value = Decimal(text)
            if not value.is_finite():
                raise InvalidOperation
            return value
    except (ValueError, InvalidOperation):
        raise QueryError(f"{field.name}: {text!r} is not a {'whole number' if field.type == 'int' else 'number'}")
    return text.lower()


def parse_query(text: str) -> tuple[Term, ...]:
    """Terms of a query string; QueryError names the part it cannot read."""
    terms: list[Term] = []
    position = 0
    text = text.strip()
    while position < len(text):
        found = _TERM.match(text, position)
        if found is None or found.end() == position:
            rest = text[position:].strip()
            raise QueryError(f"cannot read {rest!r}: write terms as `field op value`, op one of {' '.join(OPERATORS)}")
        field = _field(found["field"])
        op = "=" if found["op"] == "==" else found["op"].lower()
        if op not in OPERATORS:
            raise QueryError(f"unknown operator {found['op']!r}; valid operators: {' '.join(OPERATORS)}")
        raw = found["value"]
        if op in ("in", "notin"):
            if not (raw.startswith("[") and raw.endswith("]")):
                raise QueryError(f"{field.name} {op}: give a list, e.g. [a,b]")
            items = [item for item in raw[1:-1].split(",") if item.strip()]
            if not items:
                raise QueryError(f"{field.name} {op}: the list is empty")
            value: Any = tuple(_value(field, item) for item in items)
        else:
            if raw.startswith("["):
                raise QueryError(f"{field.name} {op}: a list needs `in` or `notin`")
            value = _value(field, raw)
            if field.type == "str" and op not in ("=", "!="):
                raise QueryError(f"{field.name}: a text field takes = != in notin, not {op}")
        if field.key is None and op != "=":
            raise QueryError(f"{field.name}: only = is supported")
        terms.append(Term(field, op, value))
        position = found.end()
    return tuple(terms)


def parse_sort(text: str | None) -> str:
    """`price`, `price+`, `price-` or `-price` as the API's sort key."""
    if not text:
        return "price"
    raw = text.strip()
    descending = raw.endswith("-") or raw.startswith("-")
    name = raw.strip("+-")
    sortable = [name for name, field in FIELDS.items() if field.sort]
    field = FIELDS.get(ALIASES.get(name.lower(), name.lower()))
    if field is None or field.sort is None:
        raise QueryError(f"cannot sort by {name!r}; sort by one of: {', '.join(sortable)} (add - for descending)")
    if descending:
        if field.descending_sort is None:
            raise QueryError(f"{field.name} sorts ascending only")
        return field.descending_sort
    return field.sort


def offer_query(text: str, sort: str | None = None) -> OfferQuery:
    return OfferQuery(terms=parse_query(text), sort=parse_sort(sort))


def _server_params(term: Term) -> dict[str, str]:
    """What GET /api/v1/offers can filter for this term without dropping a match."""
    name, op, value = term.field.name, term.op, term.value
    if name == "gpu_model" and op == "=":
        return {"gpu_model": value}
    if name == "region" and (op == "=" or (op == "in" and len(value) == 1)):
        return {"region": value if op == "=" else value[0]}
    if name == "continent":
        return {"continent": value}
    if name == "mode" and op == "=":
        return {"mode": value}
    if name in ("vram", "gpus") and op in (">=", ">", "="):
        least = value + 1 if op == ">" else value
        limit = 4096 if name == "vram" else 64
        return {("min_vram_gb" if name == "vram" else "min_gpus"): str(least)} if 1 <= least <= limit else {}
    if name == "uptime" and op in (">=", ">", "=") and 0 <= value <= 1:
        return {"min_uptime": repr(value)}
    if name == "price" and op in ("<=", "<", "=") and 0 <= value <= 100_000 and value == round(value, 6):
        return {"max_price_per_hour": f"{value:f}"}
    if name == "tier":
        allowed = {tier for tier in range(1, 8) if term.matches({"trust_tier": tier})}
        return {"tier": ",".join(str(tier) for tier in sorted(allowed))} if allowed else {}
    return {}
