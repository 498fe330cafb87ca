from __future__ import annotations

from django.db.models import QuerySet

from providers.models import GpuModel, Region


def gpu_model_list() -> QuerySet[GpuModel]:
    return GpuModel.objects.all()


def region_list() -> QuerySet[Region]:
    return Region.objects.all()


def gpu_model_exists(slug: str) -> bool:
    return GpuModel.objects.filter(slug=slug).exists()


def region_exists(code: str) -> bool:
    return Region.objects.filter(code=code).exists()


def region_codes_in(continent: str) -> QuerySet:
    return Region.objects.filter(continent=continent).values_list("code", flat=True)
