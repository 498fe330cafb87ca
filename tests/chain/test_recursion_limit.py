"""Importing the chain app (and so web3 and py_ecc) leaves Python's recursion limit alone: py_ecc
raises it to 100,000, and a deeply nested webhook body then crashed the process (a segmentation
fault in CI) instead of being refused with a 400."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_chain_modules_keeps_the_recursion_limit():
    code = (
        "import sys; before = sys.getrecursionlimit(); import django; django.setup(); "
        "import accounts.wallets, chain.evm.client, chain.evm.anvil, chain.solana.scan, web3, eth_account; "
        "print(before, sys.getrecursionlimit())"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "spheron_web.settings", "DEBUG": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=ROOT
    ).stdout.split()
    assert out[0] == out[1] == "1000"
