"""The new-deployment form and the spec templates it starts from (a GPU job, a CPU-only job, or a
spec pinned to one catalog offer when the renter pressed "Rent")."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from django import forms

from core.money import format_usd
from marketplace.deployments.spec import MAX_SPEC_BYTES
from providers.capacity import Request, lease_price
from providers.models import GpuModel, Node, NodeMode

# What "Rent" asks for by default, trimmed to what the node has free.
RENT_CPU_CORES = 2
RENT_MEMORY_GB = 4
RENT_STORAGE_GB = 20
# The pre-filled maximum price sits this much above the node's price for the share, so a small
# price change between page and match does not make the order fail.
RENT_PRICE_MARGIN = Decimal("1.2")

GPU_TEMPLATE = """\
version: "2.0"
services:
  train:
    image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime
    command: ["python", "-c", "import torch; print(torch.cuda.get_device_name(0))"]
    env: ["PYTHONUNBUFFERED=1"]
    resources:
      cpu: {units: 4}
      memory: {size: 16Gi}
      storage: [{size: 50Gi}]
      gpu: {units: 1, model: rtx4090, req_vram: ">=24"}
    price: {token: USD, amount: 0.50}   # the most you pay per hour
deployment:
  duration: 1h              # s, min, h, d or mon
  mode: fizz                # fizz (community nodes) or provider (datacenters)
  tiers: [community]
"""

# One-line commands: the spec refuses control characters, newlines included, in command arguments.
CPU_TEMPLATE = """\
version: "2.0"
services:
  job:
    image: python:3.12-slim
    command: ["python", "-c", "import time; [print('tick', i, flush=True) or time.sleep(1) for i in range(60)]"]
    resources:
      cpu: {units: 1}
      memory: {size: 1Gi}
      storage: [{size: 1Gi}]
    price: {token: USD, amount: 0.10}   # the most you pay per hour
deployment:
  duration: 1h
  mode: fizz
  tiers: [community]
"""

TEMPLATES = {"gpu": ("GPU job (RTX 4090)", GPU_TEMPLATE), "cpu": ("CPU-only job", CPU_TEMPLATE)}


class SpecForm(forms.Form):
    # Django's CharField refuses NUL bytes; spec_parse reports everything else with field and line.
    spec = forms.CharField(
        max_length=MAX_SPEC_BYTES,
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 24, "spellcheck": "false", "autocomplete": "off", "autocapitalize": "off", "wrap": "off"}
        ),
    )


def _price_text(micros: int) -> str:
    """Micro-dollars to a YAML price with cents, rounded up: 182_400 -> '0.19'."""
    dollars = (Decimal(micros) / 1_000_000).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
    return str(max(dollars, Decimal("0.01")))


def spec_for_node(node: Node) -> str:
    """A one-hour spec pinned to `node`: its GPU model, its mode, and a price a bit above the node's
    price for the requested share."""
    cpu = max(1, min(RENT_CPU_CORES, node.available_cpu_cores))
    memory = max(1, min(RENT_MEMORY_GB, node.available_memory_gb))
    storage = max(1, min(RENT_STORAGE_GB, node.available_storage_gb))
    is_gpu = node.gpu_model.kind == GpuModel.Kind.GPU
    request = Request(
        mode=node.mode, tiers=[], cpu_cores=cpu, memory_gb=memory, storage_gb=storage,
        gpu_units=1 if is_gpu else 0, gpu_models=[], min_vram_gb=0, max_price_per_hour_micros=0,
        regions=[], region_exclude=[], desired_provider="", provider_exclude=[], node=node.id,
    )  # fmt: skip
    share_price = lease_price(node, request)
    price = _price_text(int(share_price * RENT_PRICE_MARGIN))
    asks = format_usd(share_price, places=4)
    fizz = node.mode == NodeMode.FIZZ
    if is_gpu:
        service = (
            "  train:\n"
            "    image: pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime\n"
            '    command: ["python", "-c", "import torch; print(torch.cuda.get_device_name(0))"]\n'
        )
        gpu = f"      gpu: {{units: 1, model: {node.gpu_model_id}}}\n"
    else:
        service = (
            "  job:\n"
            "    image: python:3.12-slim\n"
            '    command: ["python", "-c", "import time; [print(\'tick\', i, flush=True) or time.sleep(1) '
            'for i in range(60)]"]\n'
        )
        gpu = ""
    return (
        'version: "2.0"\n'
        "services:\n"
        f"{service}"
        "    resources:\n"
        f"      cpu: {{units: {cpu}}}\n"
        f"      memory: {{size: {memory}Gi}}\n"
        f"      storage: [{{size: {storage}Gi}}]\n"
        f"{gpu}"
        f"    price: {{token: USD, amount: {price}}}   # node {node.id} asks {asks}/h for this\n"
        "deployment:\n"
        "  duration: 1h\n"
        f"  mode: {'fizz' if fizz else 'provider'}\n"
        f"  tiers: [{'community' if fizz else 'secured'}]\n"
        f"  attributes: {{node: {node.id}}}   # pinned to this node\n"
    )


def node_tier_outside_mode(node: Node) -> bool:
    """A pinned spec asks for its mode's tiers; a node outside them would never match."""
    return (node.trust_tier >= 4) != (node.mode == NodeMode.FIZZ)
