"""The chains: registry, web3 and Solana clients, contract bindings, watchers (issue 20). Below
billing, above accounts: it records what happened on chain; billing credits it."""

import core.eth  # noqa: F401  (first: keeps Python's recursion limit; see there)
