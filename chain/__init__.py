"""The chains: registry, web3 and Solana clients, contract bindings, watchers (issue 20). Below
billing, above accounts: it records what happened on chain; billing credits it."""

import sys as _sys

# py_ecc (web3 → eth_account → py_ecc) raises the interpreter's recursion limit to 100,000 when it
# is imported, so a deeply nested input (a 100,000-level JSON array in a webhook) overflowed the C
# stack and killed the process instead of raising RecursionError. Import it here, first of every
# chain module, and put the limit back. (If it was imported before this, the limit it found is lost:
# Python's default, 1000, is restored.)
_limit = 1000 if "py_ecc" in _sys.modules else _sys.getrecursionlimit()
import py_ecc  # noqa: E402, F401

_sys.setrecursionlimit(_limit)
