from __future__ import annotations

from django.db import models

from providers.models import LISTED, Node


class OfferQuerySet(models.QuerySet):
    pass


class OfferManager(models.Manager.from_queryset(OfferQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> OfferQuerySet:
        return super().get_queryset().filter(LISTED)


class Offer(Node):
    """A node as the catalog lists it: online, not in maintenance, with at least one free GPU.

    A proxy, not a copy: an offer is the node's free capacity at the node's price, so there is
    nothing to keep in sync.
    """

    objects = OfferManager()

    class Meta:
        proxy = True
        verbose_name = "offer"
