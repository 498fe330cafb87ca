"""/account/wallets/: the user's linked addresses (stake, payout), their history, and a "Link with
wallet" button per purpose (static/js/siwe.js signs the server's EIP-4361 message in an injected
wallet and posts it to the API)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.models import WalletPurpose
from accounts.wallets import wallet_current, wallet_history


@login_required
def wallets(request: HttpRequest) -> HttpResponse:
    current = wallet_current(user=request.user)  # type: ignore[arg-type]
    context = {
        "slots": [
            {
                "purpose": WalletPurpose.STAKE.value,
                "title": "Stake address",
                "link": current["stake"],
                "help": "The address whose $SPON stake counts for your nodes. One per account.",
            },
            {
                "purpose": WalletPurpose.PAYOUT.value,
                "title": "Payout address",
                "link": current["payout"],
                "help": "Where provider payouts are sent on EVM chains.",
            },
        ],
        "history": wallet_history(user=request.user),  # type: ignore[arg-type]
    }
    return render(request, "accounts/wallets.html", context)
