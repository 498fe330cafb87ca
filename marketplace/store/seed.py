"""The model store's first templates, loaded by a data migration (update_or_create by slug, so a
later migration can load a changed list again). Admins edit them in the admin afterwards."""

from __future__ import annotations

from decimal import Decimal

# NVIDIA GPUs (the images are CUDA builds) by memory per GPU, from providers/reference/gpu_models.json.
NVIDIA_24GB_UP = ["rtx3090", "rtx4090", "rtx5090", "a5000", "l4", "a10", "a6000", "l40s", "a100-40g", "a100-80g",
                  "h100", "h200", "b200"]  # fmt: skip
NVIDIA_48GB_UP = ["a6000", "l40s", "a100-80g", "h100", "h200", "b200"]
NVIDIA_80GB_UP = ["a100-80g", "h100", "h200", "b200"]

HF_TOKEN = {
    "name": "HF_TOKEN",
    "label": "Hugging Face token",
    "required": False,
    "secret": True,
    "default": "",
    "help": "Needed for gated models (Llama, Gemma): a read token from huggingface.co/settings/tokens",
}
API_KEY = {
    "name": "VLLM_API_KEY",
    "label": "API key clients must send",
    "required": True,
    "secret": True,
    "default": "",
    "help": "Clients send it as 'Authorization: Bearer <key>'",
}

VLLM_SPEC = """\
version: "2.0"
services:
  vllm:
    image: vllm/vllm-openai:v0.8.5
    args: ["--model", {{ HF_MODEL }}, "--max-model-len", "@max_len@", "--port", "8000"]
    env: {{ ENV }}
    port_policy: {{ PORTS }}
    resources:
      cpu: {units: @cpu@}
      memory: {size: @memory@Gi}
      storage: [{size: @storage@Gi}]   # the model's weights are downloaded here
      gpu: {{ GPU }}
    price: {token: USD, amount: {{ MAX_PRICE }}}   # the most you pay per hour
deployment:
  duration: 4h
  mode: {{ MODE }}
  tiers: {{ TIERS }}
"""


def _filled(text: str, values: dict) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    return text


def _vllm(slug: str, size: str, model: str, vram: int, gpus: list[str], price: str, order: int, **resources) -> dict:
    return {
        "slug": slug,
        "name": f"vLLM · {size} models ({vram} GB)",
        "description": (
            f"An OpenAI-compatible API (/v1/chat/completions) served by vLLM, sized for {size} models in 16-bit "
            f"on one GPU with at least {vram} GB. Serves {model} unless you name another Hugging Face model; "
            "its VRAM is then estimated from its size."
        ),
        "category": "llm",
        "mode": "any",
        "gpu_units": 1,
        "min_vram_gb": vram,
        "gpu_models": gpus,
        "ports": [{"port": 8000, "as": 8000, "label": "OpenAI-compatible API"}],
        "env_vars": [API_KEY, HF_TOKEN],
        "hf_model_default": model,
        "max_price_per_hour": Decimal(price),
        "spec_template": _filled(VLLM_SPEC, resources),
        "order": order,
    }  # fmt: skip


TEMPLATES = [
    _vllm(
        "vllm-8b",
        "7–8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        24,
        NVIDIA_24GB_UP,
        "0.80",
        10,
        cpu=8,
        memory=32,
        storage=60,
        max_len=8192,
    ),
    _vllm(
        "vllm-14b",
        "13–14B",
        "Qwen/Qwen2.5-14B-Instruct",
        48,
        NVIDIA_48GB_UP,
        "1.50",
        11,
        cpu=12,
        memory=64,
        storage=100,
        max_len=16384,
    ),
    _vllm(
        "vllm-32b",
        "30–32B",
        "Qwen/Qwen2.5-32B-Instruct",
        80,
        NVIDIA_80GB_UP,
        "3.00",
        12,
        cpu=16,
        memory=128,
        storage=150,
        max_len=16384,
    ),
    {
        "slug": "ollama",
        "name": "Ollama",
        "description": (
            "Ollama's server with one model pulled at start (any model of ollama.com/library: llama3.1:8b, "
            "qwen2.5:7b, mistral…). Its API listens on port 11434."
        ),
        "category": "llm",
        "mode": "any",
        "gpu_units": 1,
        "min_vram_gb": 8,
        "gpu_models": [],
        "ports": [{"port": 11434, "as": 11434, "label": "Ollama API"}],
        "env_vars": [
            {
                "name": "OLLAMA_MODEL",
                "label": "Model to pull",
                "required": True,
                "secret": False,
                "default": "llama3.1:8b",
                "help": "A name from ollama.com/library",
            },
        ],  # fmt: skip
        "hf_model_default": "",
        "max_price_per_hour": Decimal("0.50"),
        "spec_template": """\
version: "2.0"
services:
  ollama:
    image: ollama/ollama:0.6.8
    command: ["/bin/sh", "-c", "ollama serve & sleep 5 && ollama pull \\"$OLLAMA_MODEL\\" && wait"]
    env: {{ ENV }}
    port_policy: {{ PORTS }}
    resources:
      cpu: {units: 4}
      memory: {size: 16Gi}
      storage: [{size: 50Gi}]
      gpu: {{ GPU }}
    price: {token: USD, amount: {{ MAX_PRICE }}}   # the most you pay per hour
deployment:
  duration: 4h
  mode: {{ MODE }}
  tiers: {{ TIERS }}
""",
        "order": 20,
    },
    {
        "slug": "comfyui",
        "name": "ComfyUI (Stable Diffusion)",
        "description": (
            "ComfyUI's node editor for Stable Diffusion, SDXL and Flux workflows, in the browser on port 8188. "
            "Put checkpoints in its models folder from the UI's manager."
        ),
        "category": "image",
        "mode": "any",
        "gpu_units": 1,
        "min_vram_gb": 12,
        "gpu_models": [],
        "ports": [{"port": 8188, "as": 8188, "label": "ComfyUI web interface"}],
        "env_vars": [
            {
                "name": "CLI_ARGS",
                "label": "Extra ComfyUI arguments",
                "required": False,
                "secret": False,
                "default": "--listen 0.0.0.0",
                "help": "Passed to ComfyUI's main.py",
            },
        ],  # fmt: skip
        "hf_model_default": "",
        "max_price_per_hour": Decimal("0.60"),
        "spec_template": """\
version: "2.0"
services:
  comfyui:
    image: yanwk/comfyui-boot:cu124-slim
    env: {{ ENV }}
    port_policy: {{ PORTS }}
    resources:
      cpu: {units: 4}
      memory: {size: 24Gi}
      storage: [{size: 80Gi}]
      gpu: {{ GPU }}
    price: {token: USD, amount: {{ MAX_PRICE }}}   # the most you pay per hour
deployment:
  duration: 4h
  mode: {{ MODE }}
  tiers: {{ TIERS }}
""",
        "order": 30,
    },
    {
        "slug": "jupyter-pytorch",
        "name": "JupyterLab with PyTorch",
        "description": "JupyterLab from the Jupyter Docker Stacks' CUDA 12 PyTorch image, on port 8888.",
        "category": "notebook",
        "mode": "any",
        "gpu_units": 1,
        "min_vram_gb": 8,
        "gpu_models": [],
        "ports": [{"port": 8888, "as": 8888, "label": "JupyterLab"}],
        "env_vars": [
            {
                "name": "JUPYTER_TOKEN",
                "label": "Notebook password (token)",
                "required": True,
                "secret": True,
                "default": "",
                "help": "Asked for when you open JupyterLab",
            },
        ],  # fmt: skip
        "hf_model_default": "",
        "max_price_per_hour": Decimal("0.60"),
        "spec_template": """\
version: "2.0"
services:
  jupyter:
    image: quay.io/jupyter/pytorch-notebook:cuda12-latest
    env: {{ ENV }}
    port_policy: {{ PORTS }}
    resources:
      cpu: {units: 4}
      memory: {size: 16Gi}
      storage: [{size: 50Gi}]
      gpu: {{ GPU }}
    price: {token: USD, amount: {{ MAX_PRICE }}}   # the most you pay per hour
deployment:
  duration: 4h
  mode: {{ MODE }}
  tiers: {{ TIERS }}
""",
        "order": 40,
    },
    {
        "slug": "ubuntu-ssh",
        "name": "Ubuntu with SSH",
        "description": (
            "A plain Ubuntu 24.04 machine with one GPU and an SSH server on port 22, your public key authorised "
            "for root. Provider mode: shell access is a datacenter feature."
        ),
        "category": "base",
        "mode": "provider",
        "gpu_units": 1,
        "min_vram_gb": 0,
        "gpu_models": [],
        "ports": [{"port": 22, "as": 22, "label": "SSH"}],
        "env_vars": [
            {
                "name": "SSH_PUBLIC_KEY",
                "label": "SSH public key",
                "required": True,
                "secret": False,
                "default": "",
                "help": "The line of ~/.ssh/id_ed25519.pub (ssh-ed25519 AAAA… you@host)",
            },
        ],  # fmt: skip
        "hf_model_default": "",
        "max_price_per_hour": Decimal("1.00"),
        "spec_template": """\
version: "2.0"
services:
  ubuntu:
    image: ubuntu:24.04
    command:
      - /bin/bash
      - -c
      - >-
        apt-get update && apt-get install -y --no-install-recommends openssh-server
        && mkdir -p /run/sshd /root/.ssh
        && printf '%s\\n' "$SSH_PUBLIC_KEY" > /root/.ssh/authorized_keys
        && chmod 600 /root/.ssh/authorized_keys
        && exec /usr/sbin/sshd -D -e
    env: {{ ENV }}
    port_policy: {{ PORTS }}
    resources:
      cpu: {units: 4}
      memory: {size: 16Gi}
      storage: [{size: 100Gi, persistent: true}]
      gpu: {{ GPU }}
    price: {token: USD, amount: {{ MAX_PRICE }}}   # the most you pay per hour
deployment:
  duration: 8h
  mode: {{ MODE }}
  tiers: {{ TIERS }}
""",
        "order": 50,
    },
]


def templates_seed(template_cls) -> None:
    """Create or update the seeded templates by slug (`template_cls`: the model, or the migration's)."""
    for row in TEMPLATES:
        fields = dict(row)
        slug = fields.pop("slug")
        template_cls.objects.update_or_create(slug=slug, defaults=fields)
