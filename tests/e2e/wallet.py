"""The browser wallet of the e2e tests: an injected EIP-1193 provider (`window.ethereum`), the
boundary those tests replace.

`install_wallet(page, account, rpc=...)` gives the page, before any of its scripts runs, a wallet
that answers eth_requestAccounts (and eth_accounts) with `account` and forwards every other request
to the anvil node at `rpc`, where dev accounts are unlocked: personal_sign and eth_sendTransaction
are signed there, as a wallet would sign them. wallet_switchEthereumChain answers null (the node is
the chain already). `answers` sets more fixed answers (eth_chainId, say); `reject` names methods the
user refuses (EIP-1193 error 4001), or REJECT_THE_REST for every method not answered. Without `rpc`,
a method neither answered nor rejected throws. Every request is recorded: `wallet_calls(page)`.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from playwright.sync_api import Page

REJECT_THE_REST = "*"

_WALLET = """
(() => {
  const account = %(account)s, rpc = %(rpc)s, answers = %(answers)s, rejected = %(reject)s;
  window.__walletCalls = [];
  window.ethereum = {
    async request({ method, params }) {
      window.__walletCalls.push({ method, params: params || [] });
      if (method === "eth_requestAccounts" || method === "eth_accounts") return [account];
      if (Object.prototype.hasOwnProperty.call(answers, method)) return answers[method];
      if (rejected.includes(method) || rejected.includes(%(reject_the_rest)s)) {
        const error = new Error("User rejected the request.");
        error.code = 4001;
        throw error;
      }
      if (!rpc) throw new Error("unexpected " + method);
      const response = await fetch(rpc, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: params || [] }),
      });
      const answer = await response.json();
      if (answer.error) {
        const error = new Error(answer.error.message);
        error.code = answer.error.code;
        throw error;
      }
      return answer.result;
    },
  };
})();
"""


def install_wallet(
    page: Page,
    account: str,
    *,
    rpc: str | None = None,
    answers: dict[str, Any] | None = None,
    reject: Collection[str] = (),
) -> None:
    """The page's wallet from now on (every page it opens): see the module's doc."""
    script = _WALLET % {
        "account": json.dumps(account),
        "rpc": json.dumps(rpc),
        "answers": json.dumps({"wallet_switchEthereumChain": None, **(answers or {})}),
        "reject": json.dumps(list(reject)),
        "reject_the_rest": json.dumps(REJECT_THE_REST),
    }
    page.add_init_script(script)


def wallet_calls(page: Page, method: str | None = None) -> list[dict[str, Any]]:
    """The requests the page made of the wallet, in order ({"method", "params"}); only `method`'s if given."""
    calls = page.evaluate("window.__walletCalls")
    return [call for call in calls if method is None or call["method"] == method]


def sent_transactions(page: Page) -> list[dict[str, Any]]:
    """The transactions the page asked the wallet to send (eth_sendTransaction's parameter)."""
    return [call["params"][0] for call in wallet_calls(page, "eth_sendTransaction")]
