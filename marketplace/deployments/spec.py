"""Deployment specs: the ICL v2 YAML shape (protocol-facts.md), or the same as JSON.

`spec_parse(text_or_dict)` returns a normalised `Spec` or raises `SpecError` listing every problem
with its field path and, for YAML, its line: `services.web.resources.gpu.units: must be ≥ 1 (line 12)`.
All services of a deployment run together on one node, so the request is their sum × replicas.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from core.errors import ApplicationError
from core.money import HOURS_PER_MONTH

MAX_SPEC_BYTES = 64 * 1024
# What a spec may expand to, checked while it is read and before any walk over it: a real spec has
# a few dozen nodes and four levels; these leave room and keep every spec a few milliseconds of work.
MAX_SPEC_DEPTH = 24
MAX_SPEC_NODES = 3000
MAX_NUMBER_CHARS = 32  # a number written longer is refused before it is converted
MAX_SIZE_BYTES = 2**50  # 1 PiB, far above any node
MAX_SERVICES = 10
MAX_REPLICAS = 8
MAX_DURATION_SECONDS = 12 * HOURS_PER_MONTH * 3600
MIN_DURATION_SECONDS = 60
MAX_PRICE_PER_HOUR = Decimal("1000")
PRICE_EXAMPLE = "{token: USD, amount: 0.50}"
PRICE_HINT = f"set the most you pay per hour: price: {PRICE_EXAMPLE}"
DURATION_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400, "mon": HOURS_PER_MONTH * 3600}
SIZE_UNITS = {
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "": 1,
}  # fmt: skip
# ASCII digits only: `\d`, int() and Decimal() also read Arabic-Indic or full-width digits.
DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
SIZE_TEXT = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,9})?)\s*([a-z]*)", re.ASCII)
DURATION_TEXT = re.compile(r"\s*([0-9]{1,9})\s*(s|min|h|d|mon)\s*", re.ASCII)
VRAM_TEXT = re.compile(r"\s*(>=)?\s*([0-9]{1,6})\s*(gb|gi)?\s*", re.ASCII)
SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$", re.IGNORECASE)
FIZZ_FORBIDDEN_PORTS = {80, 443}
SECURED, COMMUNITY = (1, 2, 3), (4, 5, 6, 7)
MODE_TIERS = {"provider": SECURED, "fizz": COMMUNITY}


class SpecError(ApplicationError):
    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        summary = "; ".join(_error_text(error) for error in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"The deployment spec has problems: {summary}{more}", {"errors": errors}, status=422)


def _error_text(error: dict[str, Any]) -> str:
    line = f" (line {error['line']})" if error.get("line") else ""
    return f"{error['field']}: {error['message']}{line}"


@dataclass
class Service:
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    ports: list[dict[str, int]]
    replicas: int
    cpu_units: Decimal
    memory_bytes: int
    storage_bytes: int
    persistent_storage: bool
    gpu_units: int
    gpu_models: list[str]
    min_vram_gb: int
    max_price_per_hour: Decimal


@dataclass
class Spec:
    services: list[Service]
    mode: str
    tiers: list[int]
    duration_seconds: int | None
    regions: list[str]
    region_exclude: list[str]
    desired_provider: str
    provider_exclude: list[str]
    node: int | None
    failover: bool
    # Totals over services × replicas: what the node must have free.
    cpu_cores: int = 0
    memory_gb: int = 0
    storage_gb: int = 0
    gpu_units: int = 0
    gpu_models: list[str] = field(default_factory=list)
    min_vram_gb: int = 0
    max_price_per_hour_micros: int = 0

    def canonical(self) -> dict[str, Any]:
        data = asdict(self)
        return json.loads(json.dumps(data, default=str, sort_keys=True))

    @property
    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.canonical(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- Reading YAML with line numbers ---------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    result = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            result[(*path, str(key.value))] = key.start_mark.line + 1
            result.update(
                {k: v for k, v in _lines(value, (*path, str(key.value))).items() if k != (*path, str(key.value))}
            )
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            result.update(_lines(item, (*path, index)))
    return result


class _TooLong(str):
    """A number written with more than MAX_NUMBER_CHARS characters, kept as text (never converted):
    the field's check reports it, so the error names the field."""


class _OverBudget(yaml.MarkedYAMLError):
    """The text asks for more than a spec may: an alias, too deep, too many values."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with a budget, enforced while composing (before anything is built):
    aliases are refused (a few hundred bytes of nested aliases expand to gigabytes), nesting is
    bounded (the composer recurses once per level, so this also keeps it far from
    RecursionError) and so is the number of values. Numbers too long to be real stay text."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.spec_depth = 0
        self.spec_nodes = 0

    def fetch_flow_collection_start(self, TokenClass: type) -> None:
        # The scanner looks up to 1,024 characters ahead and re-checks every open bracket on each
        # step, so `[[[[…` costs quadratic time before the composer sees one node: stop it here.
        if self.flow_level >= MAX_SPEC_DEPTH:
            raise _OverBudget(problem=f"is nested more than {MAX_SPEC_DEPTH} levels deep", problem_mark=self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:  # type: ignore[override]
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _OverBudget(
                problem="anchors and aliases (&name, *name) are not supported: write each value out",
                problem_mark=event.start_mark,
            )
        self.spec_nodes += 1
        if self.spec_nodes > MAX_SPEC_NODES:
            raise _OverBudget(problem=f"has more than {MAX_SPEC_NODES} values", problem_mark=event.start_mark)
        self.spec_depth += 1
        try:
            if self.spec_depth > MAX_SPEC_DEPTH:
                raise _OverBudget(
                    problem=f"is nested more than {MAX_SPEC_DEPTH} levels deep", problem_mark=event.start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.spec_depth -= 1

    def construct_bounded_number(self, node: yaml.ScalarNode) -> Any:
        text = self.construct_scalar(node)
        if len(text) > MAX_NUMBER_CHARS:
            return _TooLong(text[:MAX_NUMBER_CHARS] + "…")
        if node.tag.endswith(":int"):
            return self.construct_yaml_int(node)
        return self.construct_yaml_float(node)


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_bounded_number)
_SpecLoader.add_constructor("tag:yaml.org,2002:float", _SpecLoader.construct_bounded_number)


def _bounded_copy(data: Any) -> Any:
    """The JSON form under the same budget as YAML, walked without recursion: a SpecError when it
    is too deep or too large; numbers too long to be real become _TooLong text."""
    too_large = 10**MAX_NUMBER_CHARS
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(data, holder, 0, 1)]
    nodes = 0
    while stack:
        value, parent, key, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SPEC_NODES:
            raise SpecError([{"field": "spec", "message": f"has more than {MAX_SPEC_NODES} values", "line": None}])
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(
                [{"field": "spec", "message": f"is nested more than {MAX_SPEC_DEPTH} levels deep", "line": None}]
            )
        if isinstance(value, dict):
            copy: Any = dict.fromkeys(value)
            stack.extend((item, copy, name, depth + 1) for name, item in value.items())
        elif isinstance(value, list | tuple):
            copy = [None] * len(value)
            stack.extend((item, copy, index, depth + 1) for index, item in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and not -too_large < value < too_large:
            copy = _TooLong(f"a number with more than {MAX_NUMBER_CHARS} digits")
        else:
            copy = value
        parent[key] = copy
    return holder[0]


def spec_json_within_budget(data: Any) -> bool:
    """Whether the JSON form is within the depth and size budget (the API checks this before
    measuring it)."""
    try:
        _bounded_copy(data)
    except SpecError:
        return False
    return True


def _load(source: str | dict) -> tuple[Any, dict[tuple, int]]:
    if isinstance(source, dict):
        return _bounded_copy(source), {}
    if not isinstance(source, str):
        raise SpecError([{"field": "spec", "message": "must be YAML text or a JSON object", "line": None}])
    if len(source) > MAX_SPEC_BYTES or len(source.encode()) > MAX_SPEC_BYTES:
        raise SpecError([{"field": "spec", "message": f"is larger than {MAX_SPEC_BYTES // 1024} KiB", "line": None}])
    if "\x00" in source:
        raise SpecError([{"field": "spec", "message": "must not contain NUL bytes", "line": None}])
    if not source.strip():
        raise SpecError([{"field": "spec", "message": "is empty", "line": None}])
    loader = None
    try:
        loader = _SpecLoader(source)  # the reader refuses control characters here already
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _OverBudget as exc:
        mark = exc.problem_mark
        raise SpecError([{"field": "spec", "message": exc.problem, "line": mark.line + 1 if mark else None}]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "is not valid YAML"
        raise SpecError(
            [{"field": "spec", "message": f"is not valid YAML: {problem}", "line": mark.line + 1 if mark else None}]
        ) from None
    except (ValueError, OverflowError, IndexError, TypeError, AttributeError, KeyError):
        # PyYAML's constructors raise these for an explicit tag on text it cannot convert
        # (`!!int ''`, `!!float x`, a timestamp outside the calendar).
        raise SpecError([{"field": "spec", "message": "has a value that cannot be read", "line": None}]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, (_lines(node) if node is not None else {})


class _Checker:
    def __init__(self, lines: dict[tuple, int]):
        self.lines = lines
        self.errors: list[dict[str, Any]] = []

    def error(self, path: tuple, message: str) -> None:
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        self.errors.append({"field": ".".join(str(p) for p in path) or "spec", "message": message, "line": line})

    def mapping(self, value: Any, path: tuple, *, required: bool = True) -> dict:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.error(path, "must be a mapping" if value is not None else "is required")
            return {}
        return value

    def unknown(self, value: dict, allowed: set[str], path: tuple) -> None:
        for key in value:
            if str(key) not in allowed:
                self.error((*path, str(key)), f"is not a known field (expected one of: {', '.join(sorted(allowed))})")

    def integer(self, value: Any, path: tuple, *, minimum: int, maximum: int, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, _TooLong):
            self.error(path, f"has too many digits (at most {MAX_NUMBER_CHARS} characters)")
            return default or minimum
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, "must be a whole number")
            return default or minimum
        if value < minimum:
            self.error(path, f"must be ≥ {minimum}")
            return minimum
        if value > maximum:
            self.error(path, f"must be ≤ {maximum}")
            return maximum
        return value

    def decimal(
        self, value: Any, path: tuple, *, minimum: Decimal, maximum: Decimal, exclusive_min: bool = True
    ) -> Decimal:
        """A bounded decimal; Decimal(0) after an error, so no later sum meets a huge number.
        Text is checked as text first (ASCII digits, at most MAX_NUMBER_CHARS characters, a
        three-digit exponent at most): Decimal() would read '٣' as 3 and '9e9999999999' as a number."""
        if isinstance(value, _TooLong):
            self.error(path, f"has too many digits (at most {MAX_NUMBER_CHARS} characters)")
            return Decimal(0)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.error(path, "must be a number")
            return Decimal(0)
        if isinstance(value, float):
            if not math.isfinite(value):
                self.error(path, "must be a finite number")
                return Decimal(0)
            text = repr(value)
        elif isinstance(value, int):
            if not -(10**MAX_NUMBER_CHARS) < value < 10**MAX_NUMBER_CHARS:
                self.error(path, f"has too many digits (at most {MAX_NUMBER_CHARS} characters)")
                return Decimal(0)
            text = str(value)
        else:
            text = value.strip()
            if len(text) > MAX_NUMBER_CHARS:
                self.error(path, f"has too many digits (at most {MAX_NUMBER_CHARS} characters)")
                return Decimal(0)
            if not DECIMAL_TEXT.fullmatch(text):
                self.error(path, "must be a plain number written with the digits 0-9, such as 0.50")
                return Decimal(0)
        try:
            number = Decimal(text)
        except InvalidOperation:
            self.error(path, "must be a number")
            return Decimal(0)
        if number < minimum or (exclusive_min and number == minimum):
            self.error(path, f"must be {'>' if exclusive_min else '≥'} {minimum}")
            return Decimal(0)
        if number > maximum:
            self.error(path, f"must be ≤ {maximum}")
            return Decimal(0)
        return number

    def string(
        self, value: Any, path: tuple, *, max_length: int = 255, required: bool = True, multiline: bool = False
    ) -> str:
        if value is None or value == "":
            if required:
                self.error(path, "is required")
            return ""
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            self.error(path, "must be text")
            return ""
        value = str(value)
        if len(value) > max_length:
            self.error(path, f"must be at most {max_length} characters")
        allowed = "\t\n\r" if multiline else "\t"
        if any(ord(ch) < 32 and ch not in allowed for ch in value):
            self.error(path, "must not contain control characters")
        return value

    def string_list(self, value: Any, path: tuple, *, max_items: int = 64) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            self.error(path, "must be a list of text")
            return []
        if len(value) > max_items:
            self.error(path, f"must have at most {max_items} items")
        return [
            self.string(item, (*path, index), max_length=4096, multiline=True)
            for index, item in enumerate(value[:max_items])
        ]

    def size(self, value: Any, path: tuple) -> int:
        if isinstance(value, _TooLong) or (isinstance(value, int) and not isinstance(value, bool) and value > 10**30):
            self.error(path, f"has too many digits (at most {MAX_NUMBER_CHARS} characters)")
            return 0
        text = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
        match = SIZE_TEXT.fullmatch(text) if len(text) <= 40 else None
        if not match or match.group(2) not in SIZE_UNITS:
            self.error(path, "must be a size such as 512Mi, 4Gi or 100G")
            return 0
        size = int(Decimal(match.group(1)) * SIZE_UNITS[match.group(2)])
        if size <= 0:
            self.error(path, "must be above zero")
            return 0
        if size > MAX_SIZE_BYTES:
            self.error(path, "must be at most 1024Ti")
            return 0
        return size


def parse_duration(text: Any) -> int | None:
    if isinstance(text, bool) or not isinstance(text, (str, int)) or len(str(text)) > 40:
        return None
    match = DURATION_TEXT.fullmatch(str(text))
    if not match:
        return None
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


def parse_tier_names(values: list[str]) -> list[int] | None:
    tiers: set[int] = set()
    for raw in values:
        item = str(raw).strip().lower()
        if item == "secured":
            tiers.update(SECURED)
        elif item == "community":
            tiers.update(COMMUNITY)
        elif re.fullmatch(r"secured-[1-3]", item) or re.fullmatch(r"community-[4-7]", item):
            tiers.add(int(item.rsplit("-", 1)[1]))
        elif re.fullmatch(r"[1-7]", item):
            tiers.add(int(item))
        else:
            return None
    return sorted(tiers)


def _codes(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def spec_parse(
    source: str | dict, *, known_models: set[str] | None = None, known_regions: set[str] | None = None
) -> Spec:
    data, lines = _load(source)
    check = _Checker(lines)
    root = check.mapping(data, ())
    check.unknown(root, {"version", "services", "profiles", "deployment"}, ())
    version = root.get("version", "2.0")
    if str(version) not in ("2.0", "2"):
        check.error(("version",), 'must be "2.0"')

    services_in = check.mapping(root.get("services"), ("services",))
    if isinstance(root.get("services"), dict) and not services_in:
        check.error(("services",), "must name at least one service")
    if len(services_in) > MAX_SERVICES:
        check.error(("services",), f"must have at most {MAX_SERVICES} services")
    services = [
        _service(check, str(name), body, known_models) for name, body in list(services_in.items())[:MAX_SERVICES]
    ]

    deployment = check.mapping(root.get("deployment"), ("deployment",), required=False)
    check.unknown(deployment, {"duration", "mode", "tiers", "attributes", "failover"}, ("deployment",))
    mode = deployment.get("mode", "provider")
    if not isinstance(mode, str) or mode not in MODE_TIERS:
        check.error(("deployment", "mode"), 'must be "fizz" or "provider"')
        mode = "provider"
    duration = None
    if deployment.get("duration") not in (None, ""):
        duration = parse_duration(deployment["duration"])
        if duration is None:
            check.error(("deployment", "duration"), "must be a number and a unit: s, min, h, d or mon (e.g. 24h)")
        elif not MIN_DURATION_SECONDS <= duration <= MAX_DURATION_SECONDS:
            check.error(("deployment", "duration"), "must be between 1min and 12mon")
    tier_names = check.string_list(deployment.get("tiers"), ("deployment", "tiers"), max_items=10)
    tiers = parse_tier_names(tier_names) if tier_names else list(MODE_TIERS[mode])
    if tiers is None:
        check.error(("deployment", "tiers"), "use secured, community, secured-1..3, community-4..7 or 1..7")
        tiers = list(MODE_TIERS[mode])
    elif not set(tiers) <= set(MODE_TIERS[mode]):
        allowed = "secured (1–3)" if mode == "provider" else "community (4–7)"
        check.error(("deployment", "tiers"), f"{mode} mode allows only {allowed} tiers")
    failover = deployment.get("failover", True)
    if not isinstance(failover, bool):
        check.error(("deployment", "failover"), "must be true or false")
        failover = True

    attributes = check.mapping(deployment.get("attributes"), ("deployment", "attributes"), required=False)
    check.unknown(
        attributes,
        {"region", "region_exclude", "desired_provider", "provider_exclude", "node"},
        ("deployment", "attributes"),
    )
    regions = _codes(attributes.get("region"))
    region_exclude = _codes(attributes.get("region_exclude"))
    if known_regions is not None:
        for key, codes in (("region", regions), ("region_exclude", region_exclude)):
            for code in codes:
                if code not in known_regions:
                    check.error(
                        ("deployment", "attributes", key),
                        f"unknown region {code!r}{_did_you_mean(code, known_regions)}",
                    )
    if set(regions) & set(region_exclude):
        check.error(("deployment", "attributes", "region_exclude"), "excludes a region the spec asks for")
    desired_provider = check.string(
        attributes.get("desired_provider"),
        ("deployment", "attributes", "desired_provider"),
        max_length=80,
        required=False,
    )
    provider_exclude = _codes(attributes.get("provider_exclude"))
    node = None
    if attributes.get("node") not in (None, ""):
        node = check.integer(attributes.get("node"), ("deployment", "attributes", "node"), minimum=1, maximum=2**62)

    spec = Spec(
        services=services,
        mode=mode,
        tiers=tiers,
        duration_seconds=duration,
        regions=regions,
        region_exclude=region_exclude,
        desired_provider=desired_provider,
        provider_exclude=provider_exclude,
        node=node,
        failover=failover,
    )
    _totals(check, spec)
    if check.errors:
        raise SpecError(check.errors)
    return spec


def _did_you_mean(word: str, known: set[str]) -> str:
    """ "; did you mean 'rtx4090'?" for a near spelling (spaces, dashes and case ignored): the same
    name written differently, else the names it begins, else the longest name it begins with, else
    up to three close ones, best first."""
    squash = {re.sub(r"[\s_-]", "", name.lower()): name for name in known}
    typed = re.sub(r"[\s_-]", "", word.lower())
    if typed in squash:
        names = [squash[typed]]
    elif prefixed := sorted(name for key, name in squash.items() if typed and key.startswith(typed)):
        names = prefixed[:3]
    elif within := sorted((key for key in squash if len(key) > 1 and typed.startswith(key)), key=len, reverse=True):
        names = [squash[within[0]]]  # "h100-80g" → h100, "us-east-1" → us-east
    else:
        names = [squash[key] for key in difflib.get_close_matches(typed, list(squash), n=3, cutoff=0.75)]
    if not names:
        return ""
    quoted = [repr(name) for name in names]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"; did you mean {listed}?"


def _service(check: _Checker, name: str, body: Any, known_models: set[str] | None) -> Service:
    path = ("services", name)
    if not SERVICE_NAME.match(name):
        check.error(path, "a service name is lower-case letters, digits and dashes (at most 63)")
    body = check.mapping(body, path)
    check.unknown(
        body,
        {
            "image",
            "command",
            "args",
            "env",
            "expose",
            "port_policy",
            "ports",
            "resources",
            "price",
            "replica",
            "replicas",
        },
        path,
    )
    image = check.string(body.get("image"), (*path, "image"))
    if image and not IMAGE.match(image):
        check.error((*path, "image"), "is not a container image reference (e.g. python:3.12-slim)")
    command = check.string_list(body.get("command"), (*path, "command"))
    args = check.string_list(body.get("args"), (*path, "args"))
    env = _env(check, body.get("env"), (*path, "env"))
    ports = _ports(check, body.get("port_policy", body.get("ports", body.get("expose"))), (*path, "port_policy"))
    replicas = check.integer(
        body.get("replica", body.get("replicas")), (*path, "replica"), minimum=1, maximum=MAX_REPLICAS, default=1
    )

    resources = check.mapping(body.get("resources"), (*path, "resources"))
    check.unknown(resources, {"cpu", "memory", "storage", "gpu"}, (*path, "resources"))
    cpu = check.mapping(resources.get("cpu"), (*path, "resources", "cpu"))
    cpu_units = (
        check.decimal(cpu.get("units"), (*path, "resources", "cpu", "units"), minimum=Decimal(0), maximum=Decimal(512))
        if cpu
        else Decimal(0)
    )
    memory = check.mapping(resources.get("memory"), (*path, "resources", "memory"))
    memory_bytes = check.size(memory.get("size"), (*path, "resources", "memory", "size")) if memory else 0
    storage_bytes, persistent = 0, False
    storage = resources.get("storage")
    storage_items = storage if isinstance(storage, list) else ([storage] if isinstance(storage, dict) else None)
    if storage is not None and storage_items is None:
        check.error((*path, "resources", "storage"), "must be a list of {size: …}")
    for index, item in enumerate(storage_items or []):
        item_path = (
            (*path, "resources", "storage", index) if isinstance(storage, list) else (*path, "resources", "storage")
        )
        item = check.mapping(item, item_path)
        storage_bytes += check.size(item.get("size"), (*item_path, "size")) if item else 0
        attrs = item.get("attributes") if isinstance(item.get("attributes"), dict) else {}
        if item.get("persistent") is True or attrs.get("persistent") is True:
            persistent = True

    gpu_units, gpu_models, min_vram = 0, [], 0
    if resources.get("gpu") is not None:
        gpu = check.mapping(resources.get("gpu"), (*path, "resources", "gpu"))
        check.unknown(gpu, {"units", "model", "models", "req_vram", "vendor"}, (*path, "resources", "gpu"))
        gpu_units = check.integer(gpu.get("units"), (*path, "resources", "gpu", "units"), minimum=1, maximum=16)
        raw_models = gpu.get("model", gpu.get("models"))
        gpu_models = [
            m.lower() for m in check.string_list(raw_models, (*path, "resources", "gpu", "model"), max_items=20)
        ]
        if known_models is not None:
            for model in gpu_models:
                if model not in known_models:
                    check.error(
                        (*path, "resources", "gpu", "model"),
                        f"unknown GPU model {model!r}{_did_you_mean(model, known_models)}",
                    )
        if gpu.get("req_vram") not in (None, ""):
            raw_vram = gpu["req_vram"]
            text = str(raw_vram).lower() if isinstance(raw_vram, str | int) and not isinstance(raw_vram, bool) else ""
            match = VRAM_TEXT.fullmatch(text) if len(text) <= 40 else None
            if not match:
                check.error((*path, "resources", "gpu", "req_vram"), 'must be a VRAM size in GB such as ">=24"')
            else:
                min_vram = int(match.group(2))

    price = body.get("price")
    if price is None:
        check.error((*path, "price"), f"is required: {PRICE_HINT}")
    elif not isinstance(price, dict):
        check.error((*path, "price"), f"must be a mapping such as {PRICE_EXAMPLE}")
    price = price if isinstance(price, dict) else {}
    max_price = Decimal(0)
    if price:
        token = str(price.get("token", "USD")).upper()
        if token not in ("USD", "USDC", "CREDITS"):
            check.error((*path, "price", "token"), "prices are in USD credits: use USD")
        max_price = check.decimal(
            price.get("amount"), (*path, "price", "amount"), minimum=Decimal(0), maximum=MAX_PRICE_PER_HOUR
        )
    return Service(
        name=name, image=image, command=command, args=args, env=env, ports=ports, replicas=replicas,
        cpu_units=cpu_units, memory_bytes=memory_bytes, storage_bytes=storage_bytes, persistent_storage=persistent,
        gpu_units=gpu_units, gpu_models=gpu_models, min_vram_gb=min_vram, max_price_per_hour=max_price,
    )  # fmt: skip


def _env(check: _Checker, value: Any, path: tuple) -> dict[str, str]:
    if value is None:
        return {}
    pairs: list[tuple[Any, Any, tuple]] = []
    if isinstance(value, dict):
        pairs = [(key, val, (*path, str(key))) for key, val in value.items()]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item:
                check.error((*path, index), 'must be "KEY=value"')
                continue
            key, _, val = item.partition("=")
            pairs.append((key, val, (*path, index)))
    else:
        check.error(path, 'must be a list of "KEY=value" or a mapping')
    env = {}
    for key, val, item_path in pairs[:200]:
        if not isinstance(key, str) or not ENV_KEY.match(key):
            check.error(item_path, f"{key!r} is not a valid variable name")
            continue
        env[key] = check.string("" if val is None else val, item_path, max_length=8192, required=False, multiline=True)
    return env


def _ports(check: _Checker, value: Any, path: tuple) -> list[dict[str, int]]:
    if value is None:
        return []
    if not isinstance(value, list):
        check.error(path, "must be a list of {port: …, as: …}")
        return []
    ports = []
    for index, item in enumerate(value[:32]):
        item_path = (*path, index)
        if isinstance(item, int) and not isinstance(item, bool):
            item = {"port": item}
        item = check.mapping(item, item_path)
        if not item:
            continue
        port = check.integer(item.get("port"), (*item_path, "port"), minimum=1, maximum=65535)
        exposed = check.integer(item.get("as", port), (*item_path, "as"), minimum=1, maximum=65535)
        ports.append({"port": port, "as": exposed})
    return ports


def _totals(check: _Checker, spec: Spec) -> None:
    cpu = Decimal(0)
    memory = storage = gpus = 0
    models: set[str] = set()
    price = Decimal(0)
    for service in spec.services:
        cpu += service.cpu_units * service.replicas
        memory += service.memory_bytes * service.replicas
        storage += service.storage_bytes * service.replicas
        gpus += service.gpu_units * service.replicas
        price += service.max_price_per_hour
        if service.gpu_models:
            models = set(service.gpu_models) if not models else models & set(service.gpu_models)
        spec.min_vram_gb = max(spec.min_vram_gb, service.min_vram_gb)
        if spec.mode == "fizz":
            for index, port in enumerate(service.ports):
                if port["as"] in FIZZ_FORBIDDEN_PORTS or port["port"] in FIZZ_FORBIDDEN_PORTS:
                    check.error(
                        ("services", service.name, "port_policy", index),
                        "fizz mode does not allow ports 80 or 443 (use provider mode for HTTPS ingress)",
                    )
            if service.persistent_storage:
                check.error(("services", service.name, "resources", "storage"), "fizz mode has no persistent storage")
    if spec.mode == "fizz" and gpus > 1:
        check.error(("services",), f"fizz mode allows one GPU per deployment; this spec asks for {gpus}")
    if spec.services and price <= 0 and not any(e["field"].endswith((".price", ".price.amount")) for e in check.errors):
        check.error(("services", spec.services[0].name, "price"), PRICE_HINT)
    spec.cpu_cores = max(1, math.ceil(cpu)) if spec.services else 0
    spec.memory_gb = math.ceil(memory / 2**30)
    spec.storage_gb = math.ceil(storage / 2**30)
    spec.gpu_units = gpus
    spec.gpu_models = sorted(models)
    spec.max_price_per_hour_micros = int((price * 1_000_000).to_integral_value())
    if spec.services and price > 0 and spec.max_price_per_hour_micros <= 0:
        # Below half a micro-dollar the hold would be $0, which no ledger can place: refuse it
        # here, so validating and creating give the same answer.
        priced = next(service for service in spec.services if service.max_price_per_hour > 0)
        check.error(("services", priced.name, "price", "amount"), "must be at least 0.000001 (USD per hour)")


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of the JSON form (published at GET /api/v1/deployments/spec-schema)."""
    size = {"type": "string", "pattern": r"^\d+(\.\d+)?\s*([KMGT]i?|[KMGT]B)?$", "examples": ["4Gi", "512Mi"]}
    service = {
        "type": "object",
        "required": ["image", "resources", "price"],
        "additionalProperties": False,
        "properties": {
            "image": {"type": "string", "maxLength": 255},
            "command": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "args": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "env": {
                "oneOf": [
                    {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*="}},
                    {"type": "object", "additionalProperties": {"type": "string"}},
                ]
            },
            "port_policy": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["port"],
                    "properties": {
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "as": {"type": "integer", "minimum": 1, "maximum": 65535},
                    },
                },
            },
            "replica": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
            "resources": {
                "type": "object",
                "required": ["cpu", "memory"],
                "additionalProperties": False,
                "properties": {
                    "cpu": {
                        "type": "object",
                        "required": ["units"],
                        "properties": {"units": {"type": "number", "exclusiveMinimum": 0}},
                    },
                    "memory": {"type": "object", "required": ["size"], "properties": {"size": size}},
                    "storage": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {"size": size, "persistent": {"type": "boolean"}},
                        },
                    },
                    "gpu": {
                        "type": "object",
                        "required": ["units"],
                        "properties": {
                            "units": {"type": "integer", "minimum": 1, "maximum": 16},
                            "model": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                            "req_vram": {"type": "string", "pattern": r"^(>=)?\s*\d+\s*(GB|Gi)?$"},
                        },
                    },
                },
            },
            "price": {
                "type": "object",
                "required": ["amount"],
                "properties": {
                    "token": {"const": "USD"},
                    "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://spheron.example/api/v1/deployments/spec-schema",
        "title": "Spheron deployment spec (ICL v2)",
        "type": "object",
        "required": ["services"],
        "additionalProperties": False,
        "properties": {
            "version": {"enum": ["2.0", "2"]},
            "services": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": MAX_SERVICES,
                "propertyNames": {"pattern": SERVICE_NAME.pattern},
                "additionalProperties": service,
            },
            "deployment": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "duration": {"type": "string", "pattern": r"^\d+(s|min|h|d|mon)$"},
                    "mode": {"enum": ["fizz", "provider"], "default": "provider"},
                    "tiers": {"type": "array", "items": {"type": "string"}},
                    "failover": {"type": "boolean", "default": True},
                    "attributes": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "region": {"type": "string"},
                            "region_exclude": {"type": "string"},
                            "desired_provider": {"type": "string"},
                            "provider_exclude": {"type": "string"},
                            "node": {"type": "integer", "minimum": 1},
                        },
                    },
                },
            },
        },
    }
