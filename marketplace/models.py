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


class DemoMarket(models.Model):
    """What `seed_demo` last loaded, so a repeated run with the same arguments is a no-op."""

    seed = models.BigIntegerField()
    nodes = models.PositiveIntegerField()
    generator_version = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "demo market"

    def __str__(self) -> str:
        return f"demo market v{self.generator_version}: seed={self.seed} nodes={self.nodes}"
