"""How much VRAM a Hugging Face model needs, from its id alone (no network: the size is read from
the name, "Llama-3.1-8B-Instruct" -> 8B parameters, or stated by the user).

VRAM ≈ parameters × bytes per parameter × 1.2 (the KV cache and the runtime's own memory). Bytes
per parameter: 2 (fp16/bf16, the default), 1 for an 8-bit name (fp8, int8), 0.5 for a 4-bit one
(AWQ, GPTQ, int4, 4bit).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.errors import ApplicationError

OVERHEAD = Decimal("1.2")
MAX_PARAMS_B = Decimal(2000)  # above any open model; a larger number is a typo
# org/name, as the Hub spells them; the org may be left out (gpt2).
MODEL_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$", re.ASCII)
# "8B", "1.5b", "135M", "8x7B": a number not glued to a letter or digit before it (so the "A3B" of
# "Qwen3-30B-A3B", the active parameters, is not read as the size), and not followed by one.
SIZE = re.compile(
    r"(?<![A-Za-z0-9.])(?:(\d{1,3})x)?(\d{1,4}(?:\.\d{1,3})?)([bm])(?![a-z0-9])", re.ASCII | re.IGNORECASE
)
FOUR_BIT = re.compile(r"(?<![a-z0-9])(awq|gptq|int4|4bit|4-bit|bnb-4bit|q4(?:_k_m)?|nf4)(?![a-z0-9])", re.IGNORECASE)
EIGHT_BIT = re.compile(r"(?<![a-z0-9])(fp8|int8|8bit|8-bit|w8a8|q8(?:_0)?)(?![a-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class VramEstimate:
    model_id: str
    params_b: Decimal  # billions of parameters
    stated: bool  # the user gave the size; otherwise it was read from the id
    precision: str  # fp16, 8-bit or 4-bit
    bytes_per_param: Decimal
    vram_gb: Decimal  # one decimal
    min_vram_gb: int  # what the spec asks for: vram_gb rounded up

    @property
    def explanation(self) -> str:
        """'8B parameters × 2 bytes (fp16) × 1.2 overhead ≈ 19.2 GB: asks for a GPU with ≥ 20 GB'."""
        source = "as stated" if self.stated else "from the model id"
        return (
            f"{_number(self.params_b)}B parameters ({source}) × {_number(self.bytes_per_param)} bytes "
            f"({self.precision}) × {OVERHEAD} overhead ≈ {self.vram_gb} GB: asks for a GPU with ≥ {self.min_vram_gb} GB"
        )


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def model_id_clean(model_id: str) -> str:
    """The id stripped, or an ApplicationError on field `hf_model` saying what an id looks like."""
    model_id = model_id.strip()
    if model_id.startswith(("https://huggingface.co/", "huggingface.co/")):
        model_id = model_id.split("huggingface.co/", 1)[1].strip("/")
    if not MODEL_ID.fullmatch(model_id):
        raise ApplicationError(
            "hf_model: not a Hugging Face model id; write it as organisation/name, e.g. "
            "meta-llama/Llama-3.1-8B-Instruct",
            {"field": "hf_model"},
        )
    return model_id


def params_from_id(model_id: str) -> Decimal | None:
    """Billions of parameters named in the id ("8B", "1.5B", "135M", "8x7B"), the largest if it
    names several; None when it names none."""
    name = model_id.rsplit("/", 1)[-1]
    sizes = []
    for experts, number, unit in SIZE.findall(name):
        size = Decimal(number) * (int(experts) if experts else 1)
        sizes.append(size if unit.lower() == "b" else size / 1000)
    sizes = [size for size in sizes if size > 0]
    return max(sizes) if sizes else None


def params_parse(text: str | Decimal | int | None) -> Decimal | None:
    """The size a user states, in billions ('8', '1.5', '70B'); None when blank. An ApplicationError
    on field `hf_model_params` otherwise."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    raw = str(text).strip().upper().removesuffix("B").strip()
    invalid = ApplicationError(
        f"hf_model_params: the model's size is its number of parameters in billions, between 0.001 and "
        f"{MAX_PARAMS_B}, e.g. 8 or 1.5",
        {"field": "hf_model_params"},
    )
    if len(raw) > 12 or not re.fullmatch(r"[0-9]+(\.[0-9]+)?", raw, re.ASCII):
        raise invalid
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
        raise invalid from None
    if not Decimal("0.001") <= value <= MAX_PARAMS_B:
        raise invalid
    return value


def vram_estimate(*, model_id: str, params_b: Decimal | None = None) -> VramEstimate:
    """The VRAM `model_id` needs. `params_b` (billions) overrides what the id says; an id that names
    no size and no stated size is an ApplicationError on field `hf_model_params`."""
    model_id = model_id_clean(model_id)
    stated = params_b is not None
    if params_b is None:
        params_b = params_from_id(model_id)
    if params_b is None:
        raise ApplicationError(
            f"hf_model_params: the size of {model_id!r} cannot be told from its id (no parameter count such as "
            "'8B' or '1.5B' in the name); state it in the size field (billions of parameters, e.g. 7), or pick "
            "a model whose id names its size",
            {"field": "hf_model_params", "hf_model": model_id},
        )
    if params_b > MAX_PARAMS_B:
        raise ApplicationError(
            f"hf_model_params: {_number(params_b)}B parameters is more than any open model has; state the size",
            {"field": "hf_model_params"},
        )
    if FOUR_BIT.search(model_id):
        precision, per_param = "4-bit", Decimal("0.5")
    elif EIGHT_BIT.search(model_id):
        precision, per_param = "8-bit", Decimal(1)
    else:
        precision, per_param = "fp16", Decimal(2)
    vram = (params_b * per_param * OVERHEAD).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return VramEstimate(
        model_id=model_id,
        params_b=params_b,
        stated=stated,
        precision=precision,
        bytes_per_param=per_param,
        vram_gb=vram,
        min_vram_gb=max(1, math.ceil(params_b * per_param * OVERHEAD)),
    )
