from __future__ import annotations

from django.conf import settings
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.errors import ApplicationError
from core.htmx import fragment_requested, push_filters_url, vary_on_htmx
from core.query import parse_query_filters, query_page
from marketplace.catalog.filters import SORT_LABELS, TIER_HELP, OfferFilter
from marketplace.catalog.selectors import OFFER_COLUMNS, check_references, market_board, offer_get_for_user, offer_list
from providers.models import Continent, GpuModel, NodeMode
from providers.selectors import gpu_model_list, region_list

FILTER_FIELDS = tuple(OfferFilter.model_fields)
TIER_CHOICES = [
    ("", "Any tier"),
    ("secured", "Secured (1–3)"),
    ("community", "Community (4–7)"),
    *[(str(tier), f"Tier {tier}") for tier in range(1, 8)],
]
UPTIME_CHOICES = [("", "Any uptime"), ("0.9", "≥ 90%"), ("0.95", "≥ 95%"), ("0.98", "≥ 98%"), ("0.99", "≥ 99%")]


def _offer_row(row: dict, model: GpuModel | None) -> dict:
    """An offer row with its model's name and kind (gpu, apple or cpu: what its memory means)."""
    return {
        **row,
        "gpu_name": model.name if model else row["gpu_model_id"],
        "gpu_kind": model.kind if model else GpuModel.Kind.GPU,
    }


def catalog(request: HttpRequest) -> HttpResponse:
    filters, errors = parse_query_filters(OfferFilter, request.GET)
    for _field in FILTER_FIELDS:  # each unknown reference (model, then region) is dropped in turn
        try:
            check_references(filters)
            break
        except ApplicationError as exc:
            field = exc.extra.get("field", "filters")
            errors[field] = exc.message.split(": ", 1)[-1]
            filters = filters.model_copy(update={field: None}) if field in FILTER_FIELDS else OfferFilter()
    queryset = offer_list(filters=filters)

    paginator = Paginator(queryset.values(*OFFER_COLUMNS), settings.CATALOG_PAGE_SIZE)
    page = query_page(paginator, request.GET.get("page"), errors)

    gpu_models = list(gpu_model_list())
    models_by_slug = {model.slug: model for model in gpu_models}
    page.object_list = [_offer_row(row, models_by_slug.get(row["gpu_model_id"])) for row in page]

    active = filters.active()
    context = {
        "filters": filters,
        "active": active,
        "errors": errors,
        "page": page,
        "board": market_board(filters=filters),
        "gpu_models": gpu_models,
        "regions": region_list(),
        "continents": Continent.choices,
        "modes": NodeMode.choices,
        "tier_choices": TIER_CHOICES,
        "uptime_choices": UPTIME_CHOICES,
        "sort_choices": list(SORT_LABELS.items()),
        "tier_help": TIER_HELP,
    }
    template = "marketplace/catalog.html"
    # htmx swaps only #catalog-results; a history restore (back button) needs the whole page.
    if fragment_requested(request, "catalog-results"):
        template += "#catalog-results"
    response = vary_on_htmx(render(request, template, context))
    push_filters_url(request, response, active, page.number)
    return response


def offer_detail(request: HttpRequest, node_id: int) -> HttpResponse:
    node = offer_get_for_user(node_id=node_id, user=request.user)
    return render(request, "marketplace/offer_detail.html", {"node": node})
