"""providers.capacity owns node capacity (issue 19, part 3): the listed rule is written once
(providers.models.LISTED_TERMS) and its three forms (the ORM's LISTED, `Node.is_listed`, the SQL of
the candidate filters) agree on every combination; reserving and releasing go through it."""

from __future__ import annotations

import itertools

import pytest
from django.db import connection

from providers import capacity
from providers.models import LISTED, Node, NodeStatus
from tests.factories import make_node, make_provider

pytestmark = pytest.mark.django_db


def test_the_listed_rule_reads_the_same_in_the_orm_in_python_and_in_sql():
    provider = make_provider()
    combos = list(
        itertools.product(
            [NodeStatus.ONLINE, NodeStatus.OFFLINE, NodeStatus.DISABLED], [False, True], [True, False], [0, 1]
        )
    )
    for status, maintenance, covered, free in combos:
        make_node(
            provider=provider,
            status=status,
            in_maintenance=maintenance,
            stake_covered=covered,
            available_gpus=free,
        )
    orm = set(Node.objects.filter(LISTED).values_list("id", flat=True))
    python = {node.id for node in Node.objects.all() if node.is_listed}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT n.id FROM {Node._meta.db_table} n WHERE {' AND '.join(capacity.listed_sql('n'))}")
        sql = {row[0] for row in cursor.fetchall()}
    assert len(orm) == 1  # online, not in maintenance, stake covered, a free GPU: one combination of 24
    assert orm == python == sql


def test_the_listed_sql_writes_the_constants_in_as_the_partial_indexes_have_them():
    assert capacity.listed_sql("n") == [
        "n.status = 'online'",
        "NOT n.in_maintenance",
        "n.stake_covered",
        "n.available_gpus > 0",
    ]


def test_reserve_takes_free_capacity_once_and_release_gives_it_back():
    node = make_node(gpu_count=2, cpu_cores=16, memory_gb=64, storage_gb=500)
    need = (1, 4, 16, 100)
    assert capacity.reserve({node.id: need}) == {node.id}
    assert capacity.reserve({node.id: (2, 4, 16, 100)}) == set()  # one GPU left: not taken, nothing changed
    node.refresh_from_db()
    assert (node.available_gpus, node.available_cpu_cores, node.available_memory_gb, node.available_storage_gb) == (
        1,
        12,
        48,
        400,
    )
    capacity.release(node_id=node.id, gpus=1, cpu_cores=4, memory_gb=16, storage_gb=100)
    node.refresh_from_db()
    assert (node.available_gpus, node.available_cpu_cores, node.available_memory_gb, node.available_storage_gb) == (
        2,
        16,
        64,
        500,
    )
