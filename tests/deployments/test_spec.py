"""The deployment spec: the ICL v2 YAML shape and its JSON form, every rule, every message."""

from __future__ import annotations

import json

import pytest

from marketplace.deployments.spec import SpecError, parse_duration, spec_json_schema, spec_parse

MODELS = {"rtx4090", "h100", "a100-80g"}
REGIONS = {"us-east", "us-west", "eu-west"}

VALID = """\
version: "2.0"
services:
  web:
    image: crccheck/hello-world
    replica: 1
    port_policy: [{port: 8000, as: 8080}]
    env: ["KEY=value", "OTHER=x=y"]
    resources:
      cpu: {units: 2}
      memory: {size: 4Gi}
      storage: [{size: 20Gi}]
      gpu: {units: 1, model: rtx4090, req_vram: ">=24"}
    price: {token: USD, amount: 0.50}
deployment:
  duration: 24h
  mode: fizz
  tiers: [community]
  attributes: {region: us-east, region_exclude: "", desired_provider: "", provider_exclude: ""}
"""


def parse(text):
    return spec_parse(text, known_models=MODELS, known_regions=REGIONS)


def errors_of(text) -> list[dict]:
    with pytest.raises(SpecError) as error:
        parse(text)
    assert error.value.status == 422
    return error.value.errors


def test_the_protocol_example_parses():
    spec = parse(VALID)
    (web,) = spec.services
    assert web.image == "crccheck/hello-world" and web.env == {"KEY": "value", "OTHER": "x=y"}
    assert web.ports == [{"port": 8000, "as": 8080}]
    assert (spec.cpu_cores, spec.memory_gb, spec.storage_gb, spec.gpu_units) == (2, 4, 20, 1)
    assert spec.gpu_models == ["rtx4090"] and spec.min_vram_gb == 24
    assert spec.max_price_per_hour_micros == 500_000
    assert spec.duration_seconds == 86400 and spec.mode == "fizz" and spec.tiers == [4, 5, 6, 7]
    assert spec.regions == ["us-east"] and spec.region_exclude == []


def test_the_json_form_gives_the_same_spec_and_hash():
    import yaml

    assert spec_parse(yaml.safe_load(VALID)).hash == spec_parse(VALID).hash
    assert parse(VALID).hash != parse(VALID.replace("0.50", "0.60")).hash


def test_replicas_and_services_add_up():
    text = VALID.replace("replica: 1", "replica: 2").replace('gpu: {units: 1, model: rtx4090, req_vram: ">=24"}', "")
    spec = parse(text.replace("mode: fizz", "mode: provider").replace("[community]", "[secured]"))
    assert (spec.cpu_cores, spec.memory_gb, spec.storage_gb, spec.gpu_units) == (4, 8, 40, 0)


@pytest.mark.parametrize(
    ("text", "duration"),
    [("45s", 45), ("30min", 1800), ("2h", 7200), ("3d", 259200), ("1mon", 730 * 3600), ("x", None)],
)
def test_durations(text, duration):
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("change", "field", "message", "line"),
    [
        (("units: 1, model", "units: 0, model"), "services.web.resources.gpu.units", "must be ≥ 1", 12),
        (("units: 2}", "units: -1}"), "services.web.resources.cpu.units", "must be > 0", 9),
        (("size: 4Gi", "size: lots"), "services.web.resources.memory.size", "must be a size", 10),
        (("model: rtx4090", "model: voodoo5"), "services.web.resources.gpu.model", "unknown GPU model 'voodoo5'", 12),
        (('req_vram: ">=24"', 'req_vram: "plenty"'), "services.web.resources.gpu.req_vram", "VRAM size", 12),
        (("amount: 0.50", "amount: 0"), "services.web.price.amount", "must be > 0", 13),
        (("token: USD", "token: BTC"), "services.web.price.token", "USD", 13),
        (("duration: 24h", "duration: forever"), "deployment.duration", "unit", 15),
        (("duration: 24h", "duration: 5s"), "deployment.duration", "between 1min and 12mon", 15),
        (("mode: fizz", "mode: party"), "deployment.mode", '"fizz" or "provider"', 16),
        (("tiers: [community]", "tiers: [secured]"), "deployment.tiers", "fizz mode allows only community", 17),
        (("tiers: [community]", "tiers: [gold]"), "deployment.tiers", "use secured, community", 17),
        (("region: us-east", "region: mars-1"), "deployment.attributes.region", "unknown region 'mars-1'", 18),
        (("port: 8000, as: 8080", "port: 8000, as: 443"), "services.web.port_policy.0", "80 or 443", 6),
        (("port: 8000, as: 8080", "port: 70000, as: 8080"), "services.web.port_policy.0.port", "must be ≤ 65535", 6),
        (("size: 20Gi}", "size: 20Gi, persistent: true}"), "services.web.resources.storage", "persistent", 11),
        (("units: 1, model", "units: 2, model"), "services", "one GPU per deployment", 2),
        (("image: crccheck/hello-world", "image: ''"), "services.web.image", "is required", 4),
        (('"KEY=value"', '"1KEY=value"'), "services.web.env.0", "not a valid variable name", 7),
        (("replica: 1", "replica: 99"), "services.web.replica", "must be ≤ 8", 5),
        (("replica: 1", "replica: true"), "services.web.replica", "whole number", 5),
        (("    replica: 1", "    replicaz: 1"), "services.web.replicaz", "not a known field", 5),
        (('version: "2.0"', 'version: "1.0"'), "version", '"2.0"', 1),
    ],
)
def test_each_rule_names_the_field_and_the_line(change, field, message, line):
    old, new = change
    assert old in VALID
    errors = errors_of(VALID.replace(old, new, 1))
    matching = [e for e in errors if e["field"] == field]
    assert matching, errors
    assert message in matching[0]["message"]
    assert matching[0]["line"] == line


def test_message_reads_like_the_issue_example():
    with pytest.raises(SpecError) as error:
        parse(VALID.replace("units: 1, model", "units: 0, model"))
    assert "services.web.resources.gpu.units: must be ≥ 1 (line 12)" in error.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("services: [", "not valid YAML"),
        ("- a\n- b", "must be a mapping"),
        ("services: {}", "at least one service"),
        ("version: '2.0'", "is required"),
        ("a\x00b", "NUL"),
        ("x: " + "y" * 70_000, "larger than"),
    ],
)
def test_documents_that_are_not_specs(text, message):
    errors = errors_of(text)
    assert any(message in e["message"] for e in errors), errors


def test_a_missing_price_is_explained():
    errors = errors_of(VALID.replace("    price: {token: USD, amount: 0.50}\n", ""))
    # One error for the one missing field: what is missing, and how to write it.
    assert [e["message"] for e in errors if e["field"] == "services.web.price"] == [
        "is required: set the most you pay per hour: price: {token: USD, amount: 0.50}"
    ]
    assert len(errors) == 1, errors


def test_a_price_that_is_not_a_mapping_gets_one_error():
    errors = errors_of(VALID.replace("price: {token: USD, amount: 0.50}", "price: 0.5"))
    assert [(e["field"], e["message"]) for e in errors] == [
        ("services.web.price", "must be a mapping such as {token: USD, amount: 0.50}")
    ]


def test_every_error_is_reported_at_once():
    text = VALID.replace("units: 2}", "units: 0}").replace("mode: fizz", "mode: party")
    assert {e["field"] for e in errors_of(text)} >= {"services.web.resources.cpu.units", "deployment.mode"}


def test_json_schema_is_valid_json_and_describes_the_shape():
    schema = spec_json_schema()
    json.dumps(schema)
    assert schema["required"] == ["services"]
    assert "gpu" in schema["properties"]["services"]["additionalProperties"]["properties"]["resources"]["properties"]


def test_multi_line_commands_and_env_values_are_allowed():
    text = VALID.replace(
        "    replica: 1\n",
        '    replica: 1\n    command: ["python", "-c", "import time\\nprint(1)"]\n',
    )
    (web,) = parse(text).services
    assert web.command == ["python", "-c", "import time\nprint(1)"]
    errors = errors_of(VALID.replace("image: crccheck/hello-world", 'image: "bad\\nimage"'))
    assert any(e["field"] == "services.web.image" for e in errors)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            ("model: rtx4090", "model: RTX 4090"),
            "services.web.resources.gpu.model",
            "'rtx 4090'; did you mean 'rtx4090'?",
        ),
        (("model: rtx4090", "model: a100"), "services.web.resources.gpu.model", "did you mean 'a100-80g'?"),
        (("model: rtx4090", "model: h100-sxm"), "services.web.resources.gpu.model", "did you mean 'h100'?"),
        (("model: rtx4090", "model: voodoo5"), "services.web.resources.gpu.model", "unknown GPU model 'voodoo5'"),
        (("region: us-east", "region: us-east-1"), "deployment.attributes.region", "did you mean 'us-east'?"),
        (("region: us-east", "region: eu-wst"), "deployment.attributes.region", "did you mean 'eu-west'?"),
    ],
)
def test_an_unknown_model_or_region_suggests_the_name_meant(change, field, message):
    old, new = change
    (error,) = [e for e in errors_of(VALID.replace(old, new, 1)) if e["field"] == field]
    assert error["message"].endswith(message)
    if "voodoo5" in new:
        assert "did you mean" not in error["message"]
