"""/api/v1/wallets: link an EVM address by signing a Sign-In with Ethereum (EIP-4361) message.
Session or API key auth. A script asks for the message (`POST /wallets/nonce`), signs it with the
address's key (EIP-191 personal_sign) and posts both (`POST /wallets`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.http import HttpRequest
from ninja import Router, Status
from pydantic import BaseModel, ConfigDict, Field

from accounts.auth import api_auth
from accounts.models import User, WalletLink
from accounts.wallets import wallet_current, wallet_history, wallet_link, wallet_nonce
from core.schemas import ERRORS, NoNulIn

router = Router(tags=["wallets"], auth=api_auth)

Purpose = Literal["stake", "payout"]


def _user(request: HttpRequest) -> User:
    return request.auth  # type: ignore[attr-defined, return-value]


class _StrictIn(NoNulIn):
    model_config = ConfigDict(extra="forbid", strict=True)


class WalletNonceIn(_StrictIn):
    address: str = Field(min_length=42, max_length=42, description="The EVM address to link (0x…)")
    chain_id: int = Field(ge=1, le=2**53, description="EIP-155 chain id the wallet is on")
    purpose: Purpose


class WalletNonceOut(BaseModel):
    nonce: str
    message: str = Field(description="The EIP-4361 message to sign, unchanged (personal_sign)")
    expires_at: datetime


class WalletLinkIn(_StrictIn):
    message: str = Field(min_length=1, max_length=4000, description="The message from /wallets/nonce")
    signature: str = Field(min_length=1, max_length=200, description="Its EIP-191 signature, 0x…")
    purpose: Purpose


class WalletOut(BaseModel):
    address: str
    purpose: str
    chain_id: int
    linked_at: datetime
    revoked_at: datetime | None


class WalletsCurrentOut(BaseModel):
    stake: WalletOut | None
    payout: WalletOut | None


class WalletsOut(BaseModel):
    current: WalletsCurrentOut
    history: list[WalletOut] = Field(description="Every link, newest first, revoked ones included")


def _wallet(link: WalletLink | None) -> dict | None:
    if link is None:
        return None
    return {
        "address": link.address,
        "purpose": link.purpose,
        "chain_id": link.chain_id,
        "linked_at": link.linked_at,
        "revoked_at": link.revoked_at,
    }


@router.post(
    "/nonce",
    response={200: WalletNonceOut, **ERRORS},
    operation_id="wallets_nonce",
    summary="A message to sign to link an address",
)
def wallets_nonce(request: HttpRequest, payload: WalletNonceIn) -> dict:
    nonce, message = wallet_nonce(
        user=_user(request), address=payload.address, chain_id=payload.chain_id, purpose=payload.purpose
    )
    return {"nonce": nonce.nonce, "message": message, "expires_at": nonce.expires_at}


@router.post("", response={201: WalletOut, **ERRORS}, operation_id="wallets_link", summary="Link an address")
def wallets_link(request: HttpRequest, payload: WalletLinkIn) -> Status:
    link = wallet_link(
        user=_user(request), message=payload.message, signature=payload.signature, purpose=payload.purpose
    )
    return Status(201, _wallet(link))


@router.get("", response={200: WalletsOut, **ERRORS}, operation_id="wallets_list", summary="Linked addresses")
def wallets_list(request: HttpRequest) -> dict:
    user = _user(request)
    current = wallet_current(user=user)
    return {
        "current": {purpose: _wallet(link) for purpose, link in current.items()},
        "history": [_wallet(link) for link in wallet_history(user=user)],
    }
