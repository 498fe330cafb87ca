"""Reference data shipped with the code: GPU models and regions.

`load_reference_data` is idempotent (update_or_create by key) and is run by a data migration;
a later change to the JSON files ships with a new migration that calls it again.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent


def gpu_model_rows() -> list[dict]:
    return json.loads((HERE / "gpu_models.json").read_text())


def region_rows() -> list[dict]:
    return json.loads((HERE / "regions.json").read_text())


def load_reference_data(gpu_model_cls, region_cls) -> None:
    for row in region_rows():
        fields = dict(row)
        code = fields.pop("code")
        fields["latitude"] = Decimal(fields["latitude"])
        fields["longitude"] = Decimal(fields["longitude"])
        region_cls.objects.update_or_create(code=code, defaults=fields)
    for row in gpu_model_rows():
        fields = dict(row)
        slug = fields.pop("slug")
        fields["multiplier"] = Decimal(fields["multiplier"])
        gpu_model_cls.objects.update_or_create(slug=slug, defaults=fields)
