"""Reads for the model store: which templates fit a node, the cheapest offer that can take a
rendered template (the matchmaker's own filters, providers.capacity, without its price limit), and
what would fit when nothing does."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Min, QuerySet

from core.money import format_usd
from marketplace.models import Offer, Template, TemplateMode
from providers.capacity import Request, node_filters, placeholders, price_sql, query
from providers.models import GpuModel, Node

MAX_NAMES = 6  # GPU models named in a message; the rest are counted


@dataclass(frozen=True)
class OfferChoice:
    node: Node
    share_price_micros: int  # the node's price for the template's share, per hour


def template_list() -> QuerySet[Template]:
    return Template.objects.filter(active=True).order_by("order", "name", "id")


def gpu_vram_by_model() -> dict[str, int]:
    """Memory per GPU of every discrete GPU model (Apple and CPU-only machines excluded)."""
    return dict(GpuModel.objects.filter(kind=GpuModel.Kind.GPU).values_list("slug", "vram_gb"))


def template_fits_node(template: Template, node: Node) -> bool:
    """The node's hardware can run the template: its mode, a discrete GPU (if it needs one) with at
    least the template's VRAM, and its GPU model in the template's list when it has one."""
    if template.mode not in (TemplateMode.ANY, node.mode):
        return False
    if not template.gpu_units:
        return True
    if node.gpu_model.kind != GpuModel.Kind.GPU or node.gpu_count < template.gpu_units:
        return False
    if node.vram_gb < template.min_vram_gb:
        return False
    return not template.gpu_models or node.gpu_model_id in template.gpu_models


def templates_for_node(node: Node) -> list[Template]:
    """Active templates that fit `node` (template_fits_node), in the store's order."""
    candidates = template_list().filter(mode__in=[TemplateMode.ANY, node.mode], min_vram_gb__lte=node.vram_gb)
    return [template for template in candidates if template_fits_node(template, node)]


def cheapest_fitting_offer(*, requests: list[Request]) -> OfferChoice | None:
    """The listed node with room for one of `requests` (one per mode the template runs in) at the
    lowest price for that share, ties to the lowest id; None when no node can take any."""
    best: tuple[int, int] | None = None
    for request in requests:
        where, params = node_filters(request, with_price=False)
        if request.regions:
            where.append(f"n.region_id IN ({placeholders(request.regions)})")
            params += request.regions
        price, price_params = price_sql(request)
        rows = query(
            f"SELECT {price}, n.id FROM {Node._meta.db_table} n WHERE {' AND '.join(where)} ORDER BY 1, 2 LIMIT 1",
            [*price_params, *params],
        )
        if rows:
            found = (int(rows[0][0]), int(rows[0][1]))
            best = found if best is None or found < best else best
    if best is None:
        return None
    node = Node.objects.select_related("provider", "region", "gpu_model").get(id=best[1])
    return OfferChoice(node=node, share_price_micros=best[0])


def _names(slugs: list[str]) -> str:
    names = dict(GpuModel.objects.filter(slug__in=slugs).values_list("slug", "name"))
    listed = [names.get(slug, slug) for slug in slugs]
    if len(listed) > MAX_NAMES:
        return ", ".join(listed[:MAX_NAMES]) + f" or {len(listed) - MAX_NAMES} more"
    return listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " or " + listed[-1]


def no_fit_reason(*, template: Template, requests: list[Request], node_id: int | None = None) -> str:
    """Why no offer can take the template, and what would: the GPUs it runs on and how many of
    them are listed, or the largest GPU on offer."""
    first = requests[0]
    units, min_vram_gb, gpu_models = first.gpu_units, first.min_vram_gb, first.gpu_models
    modes = " or ".join(request.mode for request in requests)
    room = f"{first.cpu_cores} cores, {first.memory_gb} GB of memory and {first.storage_gb} GB of storage free"
    if units:
        memory = f" with ≥ {min_vram_gb} GB each" if min_vram_gb else ""
        gpu_text = f"{units} GPU{'s' if units > 1 else ''}{memory}"
        needs = f"{gpu_text}, {room}, in {modes} mode"
    else:
        needs = f"{room}, in {modes} mode"
    if node_id is not None:
        return f"Node {node_id} cannot take {template.name}: it needs {needs}, and that node is not listed with that."
    head = f"No offer fits {template.name} right now: it needs {needs}."
    if not units:
        return f"{head} No listed node has that much free."
    models = GpuModel.objects.filter(kind=GpuModel.Kind.GPU, vram_gb__gte=min_vram_gb)
    if gpu_models:
        models = models.filter(slug__in=gpu_models)
    slugs = list(models.order_by("vram_gb", "slug").values_list("slug", flat=True))
    if not slugs:
        return f"{head} No GPU model has that much memory."
    would = "It would run on any GPU" if not gpu_models and not min_vram_gb else f"It would run on {_names(slugs)}"
    listed = (
        Offer.objects.filter(gpu_model_id__in=slugs, vram_gb__gte=min_vram_gb, gpu_count__gte=units)
        .values("mode")
        .annotate(n=Count("id"), cheapest=Min("price_per_gpu_hour_micros"))
        .order_by("mode")
    )
    by_mode = {row["mode"]: row for row in listed}
    in_modes = [by_mode[request.mode] for request in requests if request.mode in by_mode]
    if in_modes:
        count = sum(row["n"] for row in in_modes)
        return (
            f"{head} {would}: {count} such offer{'s are' if count > 1 else ' is'} listed, none with that much "
            "free capacity; try again later, or deploy with a smaller spec."
        )
    elsewhere = [row for mode, row in by_mode.items() if mode not in {request.mode for request in requests}]
    if elsewhere:
        row = elsewhere[0]
        return (
            f"{head} {would}: {row['n']} listed in {row['mode']} mode only (from "
            f"{format_usd(row['cheapest'], places=2)}/GPU-hour), which this template does not run in."
        )
    largest = (
        Offer.objects.filter(gpu_model__kind=GpuModel.Kind.GPU).order_by("-vram_gb", "id").values("vram_gb").first()
    )
    on_offer = f" The most VRAM on offer is {largest['vram_gb']} GB per GPU." if largest else " No GPU is on offer."
    return f"{head} {would}; none of those is on offer.{on_offer}"
