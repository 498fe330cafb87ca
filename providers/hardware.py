"""From what an agent reports (nvidia-smi names, Apple chip, core count) to a GPU model of the market.

The agent reports raw names; the server decides the model, so a tampered agent cannot pick a
better tier than the name it reports (and challenges compare the report again later).
"""

from __future__ import annotations

import re

# (pattern on the normalised name, model slug). Order matters: the more specific first.
_NVIDIA_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), slug)
    for p, slug in [
        (r"\bb200\b", "b200"),
        (r"\bh200\b", "h200"),
        (r"\bh100\b", "h100"),
        (r"\ba100\b.*\b80\s?gb\b", "a100-80g"),
        (r"\ba100\b", "a100-40g"),  # 80 GB is told apart by memory below
        (r"\bl40s\b", "l40s"),
        (r"\bl4\b", "l4"),
        (r"\ba10\b", "a10"),
        (r"\b(rtx )?a6000\b", "a6000"),
        (r"\b(rtx )?a5000\b", "a5000"),
        (r"\b(rtx )?a4000\b", "a4000"),
        (r"\brtx 5090\b", "rtx5090"),
        (r"\brtx 4090\b", "rtx4090"),
        (r"\brtx 4080\b", "rtx4080"),
        (r"\brtx 4070\b", "rtx4070"),
        (r"\brtx 3090\b", "rtx3090"),
        (r"\brtx 3080\b", "rtx3080"),
        (r"\brtx 3070\b", "rtx3070"),
        (r"\brtx 3060\b", "rtx3060"),
        (r"\bgtx 1660\b", "gtx1660"),
        (r"\bmi300x\b", "mi300x"),
    ]
]
_APPLE = re.compile(r"^apple (m[1-9])(?: (pro|max|ultra))?$")

# Thread counts behind the CPU classes (protocol-facts: Basic ≤ 48 threads; HPC is ours: ≥ 128).
CPU_BASIC_MAX_THREADS = 48
CPU_HPC_MIN_THREADS = 128


def _normalise(name: str) -> str:
    name = name.lower().replace("nvidia", " ").replace("geforce", " ")
    name = re.sub(r"[-_/]", " ", name)
    return " ".join(name.split())


def gpu_model_slug(name: str, memory_mib: int | None = None) -> str | None:
    """The market's model for one GPU as nvidia-smi names it, or None if unknown."""
    normalised = _normalise(name)
    for pattern, slug in _NVIDIA_PATTERNS:
        if pattern.search(normalised):
            if slug == "a100-40g" and memory_mib and memory_mib > 60 * 1024:
                return "a100-80g"
            return slug
    return None


def apple_model_slug(chip: str) -> str | None:
    """Apple M-series chip → model. Pro and Ultra chips rank with the base chip and the Max chip."""
    match = _APPLE.match(" ".join(chip.lower().split()))
    if not match:
        return None
    generation, variant = match.groups()
    if variant in ("max", "ultra"):
        return f"apple-{generation}-max"
    return f"apple-{generation}"


def cpu_model_slug(logical_cores: int) -> str:
    if logical_cores >= CPU_HPC_MIN_THREADS:
        return "cpu-hpc"
    if logical_cores > CPU_BASIC_MAX_THREADS:
        return "cpu-general"
    return "cpu-basic"
