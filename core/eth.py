"""eth-account (signing, EIP-191 recovery), imported once with Python's recursion limit kept.

py_ecc (web3 → eth_account → py_ecc) raises the interpreter's recursion limit to 100,000 when it is
imported, so a deeply nested input (a 100,000-level JSON array in a webhook) overflowed the C stack
and killed the process instead of raising RecursionError. Every module that needs eth-account or
web3 imports this first (chain/__init__.py does, for the whole chain app). If py_ecc was imported
before this, the limit it found is lost: Python's default, 1000, is restored.
"""

import sys as _sys

_limit = 1000 if "py_ecc" in _sys.modules else _sys.getrecursionlimit()
import py_ecc  # noqa: E402, F401
from eth_account import Account  # noqa: E402
from eth_account.messages import encode_defunct  # noqa: E402

_sys.setrecursionlimit(_limit)

__all__ = ["Account", "encode_defunct"]
