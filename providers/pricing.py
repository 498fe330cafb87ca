"""Node price arithmetic: per-resource prices to one hourly price, rounded once."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from core.money import HOURS_PER_MONTH

# Fixed Fizz prices (protocol-facts.md), micro-USD.
FIZZ_CPU_PER_CORE_MONTH = 750_000
FIZZ_MEMORY_PER_GB_MONTH = 100_000
FIZZ_STORAGE_PER_GB_MONTH = 10_000


def node_price_per_hour_micros(
    *,
    gpu_count: int,
    gpu_price_per_hour_micros: int,
    cpu_cores: int,
    cpu_price_per_core_month_micros: int,
    memory_gb: int,
    memory_price_per_gb_month_micros: int,
    storage_gb: int,
    storage_price_per_gb_month_micros: int,
) -> int:
    monthly_parts = (
        cpu_cores * cpu_price_per_core_month_micros
        + memory_gb * memory_price_per_gb_month_micros
        + storage_gb * storage_price_per_gb_month_micros
    )
    # Integer half-up rounding of monthly/730, done once.
    hourly_from_monthly = (2 * monthly_parts + HOURS_PER_MONTH) // (2 * HOURS_PER_MONTH)
    return gpu_count * gpu_price_per_hour_micros + hourly_from_monthly


def share_price_per_hour_micros(node, *, gpus: int, cpu_cores: int, memory_gb: int, storage_gb: int) -> int:
    """The hourly price of a share of a node (a lease's GPUs, cores, memory and storage) at the
    node's per-resource prices."""
    return node_price_per_hour_micros(
        gpu_count=gpus,
        gpu_price_per_hour_micros=node.gpu_price_per_hour_micros,
        cpu_cores=cpu_cores,
        cpu_price_per_core_month_micros=node.cpu_price_per_core_month_micros,
        memory_gb=memory_gb,
        memory_price_per_gb_month_micros=node.memory_price_per_gb_month_micros,
        storage_gb=storage_gb,
        storage_price_per_gb_month_micros=node.storage_price_per_gb_month_micros,
    )


def whole_node_price_per_hour_micros(node) -> int:
    """A node's own hourly price (all of it) from its per-resource prices: what
    `Node.price_per_hour_micros` must hold."""
    return share_price_per_hour_micros(
        node, gpus=node.gpu_count, cpu_cores=node.cpu_cores, memory_gb=node.memory_gb, storage_gb=node.storage_gb
    )


# Fizz GPU price: the RTX 4090's $0.175/h (protocol-facts.md) scaled by the model's tier
# multiplier (ours), unless the operator sets a price with `fizz start --price-per-hour`.
FIZZ_RTX4090_PER_HOUR = 175_000


def fizz_gpu_price_per_hour_micros(multiplier) -> int:
    return max(1, int((Decimal(FIZZ_RTX4090_PER_HOUR) * Decimal(multiplier)).quantize(Decimal(1), ROUND_HALF_UP)))
