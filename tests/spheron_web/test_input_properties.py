"""Property tests (Hypothesis) of issue 18, point 4: whatever the document or query value, the
spec parser answers with a SpecError or a Spec, and the API with a 4xx or a 2xx, never a 5xx, and
every example within a fixed time. Sized so the whole file runs in well under a minute."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import yaml
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.deployments.spec import SpecError, spec_parse
from tests.cpu import cpu_time
from tests.deployment_pages.conftest import bearer
from tests.deployments.conftest import spec_text

# CPU seconds of this thread (time.thread_time; the test client runs requests in it), so other
# processes on a busy machine do not count.
PARSE_BUDGET_SECONDS = 0.5
REQUEST_BUDGET_SECONDS = 1.0  # one request through the whole stack
QUICK = settings(
    max_examples=200,
    deadline=None,  # timed below against a fixed bound, without Hypothesis' re-run on a slow example
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REQUESTS = settings(QUICK, max_examples=80)


def parse_within_budget(source) -> None:
    with cpu_time() as timing:
        try:
            spec_parse(source, known_models={"rtx4090", "h100"}, known_regions={"us-east", "eu-west"})
        except SpecError as exc:
            assert exc.status == 422
            assert all({"field", "message", "line"} <= set(error) for error in exc.errors)
    elapsed = timing.elapsed
    assert elapsed < PARSE_BUDGET_SECONDS, f"spec_parse took {elapsed:.3f} s"


# --- Documents ---------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.from_regex(r"[0-9٠-٩０-９.eE+\-]{1,40}", fullmatch=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=40))
SPEC_KEYS = [
    "version", "services", "deployment", "app", "image", "resources", "cpu", "units", "memory", "size", "storage",
    "gpu", "model", "req_vram", "price", "amount", "token", "duration", "mode", "tiers", "attributes", "region",
    "node", "env", "port_policy", "port", "as", "replica", "command", "args", "failover", "persistent",
]  # fmt: skip
keys = st.one_of(st.sampled_from(SPEC_KEYS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)


@QUICK
@given(documents)
def test_any_json_document_is_a_spec_or_a_list_of_problems_in_bounded_time(document):
    parse_within_budget({"version": "2.0", "services": document} if not isinstance(document, dict) else document)


@QUICK
@given(documents)
def test_any_yaml_document_is_a_spec_or_a_list_of_problems_in_bounded_time(document):
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):  # a float PyYAML cannot write: nothing to parse
        return
    parse_within_budget(text)


@QUICK
@given(st.text(max_size=300))
def test_any_text_is_a_spec_or_a_list_of_problems_in_bounded_time(text):
    parse_within_budget(text)


YAML_PIECES = st.sampled_from(
    [
        "[", "]", "{", "}", ",", ":", " ", "\n", "- ", "&a ", "*a", "!!int ", "!!float ", "!!binary ", "!!set ",
        "? ", "<<: ", "9" * 50, "1e999999", "0x", "1:2:3", "'", '"', "#", "|", ">", "...", "---", "٣", "３",
        "services:", "  app:", "    price: {amount: ", "deployment:", "  duration: ", "amount: ",
    ]
)  # fmt: skip


@QUICK
@given(st.lists(YAML_PIECES, max_size=200).map("".join))
def test_any_yaml_shaped_text_is_answered_in_bounded_time(text):
    parse_within_budget(text)


@QUICK
@given(
    price=st.one_of(numbers, st.text(max_size=20)),
    size=st.one_of(numbers, st.text(max_size=20)),
    duration=st.one_of(numbers, st.text(max_size=20)),
)
def test_any_value_in_a_valid_specs_fields_is_answered_in_bounded_time(price, size, duration):
    text = spec_text(price=json.dumps(price, default=str), duration=json.dumps(duration, default=str))
    parse_within_budget(text.replace("size: 4Gi", f"size: {json.dumps(size, default=str)}"))


# --- Query parameters ------------------------------------------------------------------------

query_values = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"-?[0-9]{1,30}", fullmatch=True),
    st.sampled_from(["NaN", "inf", "-Infinity", "1e999999", "0001-01-01", "9999-12-31", "٣", "３", "", " ", "%00"]),
    st.dates().map(str),
    st.binary(max_size=40).map(lambda raw: __import__("base64").urlsafe_b64encode(raw).decode()),
    st.builds(
        lambda data: __import__("base64").urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("="),
        st.dictionaries(st.sampled_from(["s", "v", "i", "t"]), st.one_of(scalars, st.sampled_from(["price"]))),
    ),
)


def query(names: list[str]):
    return st.dictionaries(st.sampled_from(names), query_values, max_size=4)


OFFER_PARAMS = [
    "gpu_model", "min_vram_gb", "min_gpus", "region", "continent", "max_price_per_hour", "min_uptime", "tier", "mode",
    "sort", "limit", "cursor", "page",
]  # fmt: skip
TRANSACTION_PARAMS = ["kind", "date_from", "date_to", "limit", "cursor", "page", "format"]
DEPLOYMENT_PARAMS = ["status", "limit", "cursor", "page", "show"]


@pytest.fixture
def api(owner) -> Client:
    return Client(**bearer(owner))


@pytest.fixture
def browser(owner) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def get_within_budget(client: Client, path: str, params: dict[str, str]) -> None:
    with cpu_time() as timing:
        response = client.get(f"{path}?{urlencode(params)}")
    elapsed = timing.elapsed
    assert response.status_code < 500, (path, params, response.content[:300])
    assert elapsed < REQUEST_BUDGET_SECONDS, f"{path}?{urlencode(params)} took {elapsed:.3f} s"
    if path.startswith("/api/") and response.status_code >= 400:
        assert set(response.json()) == {"message", "extra"}


@pytest.mark.django_db
@REQUESTS
@given(params=query(OFFER_PARAMS))
def test_offer_filters_never_get_a_server_error(api, browser, market, params):
    get_within_budget(api, "/api/v1/offers", params)
    get_within_budget(browser, "/gpus/", params)


@pytest.mark.django_db
@REQUESTS
@given(params=query(TRANSACTION_PARAMS))
def test_transaction_filters_never_get_a_server_error(api, browser, params):
    get_within_budget(api, "/api/v1/billing/transactions", params)
    get_within_budget(browser, "/billing/transactions/", params)


@pytest.mark.django_db
@REQUESTS
@given(params=query(DEPLOYMENT_PARAMS))
def test_deployment_list_parameters_never_get_a_server_error(api, browser, params):
    get_within_budget(api, "/api/v1/deployments", params)
    get_within_budget(browser, "/deployments/", params)


@pytest.mark.django_db
@settings(QUICK, max_examples=40)
@given(document=documents)
def test_the_validate_endpoint_answers_any_json_spec_without_a_server_error(api, document):
    with cpu_time() as timing:
        response = api.post("/api/v1/deployments/validate", {"spec": document}, content_type="application/json")

    assert response.status_code in (200, 422), response.content[:300]
    assert timing.elapsed < REQUEST_BUDGET_SECONDS
