"""VRAM from a Hugging Face model id, offline: parameters read from the name × bytes per
parameter × 1.2."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from marketplace.store import hf


@pytest.mark.parametrize(
    ("model_id", "params", "vram", "asks"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "8", "19.2", 20),
        ("Qwen/Qwen2.5-1.5B-Instruct", "1.5", "3.6", 4),  # the 2.5 of Qwen2.5 is a version, not a size
        ("Qwen/Qwen2.5-32B-Instruct", "32", "76.8", 77),
        ("meta-llama/Llama-3.1-70B-Instruct", "70", "168.0", 168),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "0.135", "0.3", 1),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "56", "134.4", 135),  # experts × size
        ("Qwen/Qwen3-30B-A3B", "30", "72.0", 72),  # the active parameters (A3B) are not the size
        ("google/gemma-2-2b-it", "2", "4.8", 5),
    ],
)
def test_size_is_read_from_the_model_id(model_id, params, vram, asks):
    estimate = hf.vram_estimate(model_id=model_id)
    assert estimate.params_b == Decimal(params)
    assert estimate.vram_gb == Decimal(vram)
    assert estimate.min_vram_gb == asks
    assert not estimate.stated


def test_the_explanation_shows_the_arithmetic():
    estimate = hf.vram_estimate(model_id="meta-llama/Llama-3.1-8B-Instruct")
    assert estimate.explanation == (
        "8B parameters (from the model id) × 2 bytes (fp16) × 1.2 overhead ≈ 19.2 GB: asks for a GPU with ≥ 20 GB"
    )


@pytest.mark.parametrize(
    ("model_id", "precision", "vram"),
    [
        ("Qwen/Qwen2.5-32B-Instruct-AWQ", "4-bit", "19.2"),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "8-bit", "9.6"),
    ],
)
def test_a_quantised_name_needs_less(model_id, precision, vram):
    estimate = hf.vram_estimate(model_id=model_id)
    assert (estimate.precision, estimate.vram_gb) == (precision, Decimal(vram))


def test_an_id_without_a_size_asks_for_it():
    with pytest.raises(ApplicationError) as caught:
        hf.vram_estimate(model_id="openai-community/gpt2")
    assert caught.value.extra["field"] == "hf_model_params"
    assert "cannot be told from its id" in caught.value.message
    assert "state it in the size field" in caught.value.message


def test_a_stated_size_wins_over_the_name():
    estimate = hf.vram_estimate(model_id="openai-community/gpt2", params_b=hf.params_parse("1.5"))
    assert (estimate.vram_gb, estimate.min_vram_gb, estimate.stated) == (Decimal("3.6"), 4, True)
    assert "as stated" in estimate.explanation
    assert hf.params_parse("70B") == Decimal(70)


@pytest.mark.parametrize("text", ["-1", "0", "abc", "1e3", "٣", "99999", "1.2.3"])
def test_a_bad_stated_size_is_refused(text):
    with pytest.raises(ApplicationError) as caught:
        hf.params_parse(text)
    assert caught.value.extra["field"] == "hf_model_params"


@pytest.mark.parametrize("model_id", ["", "a b/c", "org/name/extra", "../etc", "x" * 300, "org/na\x00me"])
def test_a_malformed_id_is_refused(model_id):
    with pytest.raises(ApplicationError) as caught:
        hf.vram_estimate(model_id=model_id)
    assert caught.value.extra["field"] == "hf_model"


def test_a_hub_url_is_read_as_its_id():
    assert hf.model_id_clean("https://huggingface.co/Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
