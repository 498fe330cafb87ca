"""Stake from the chain: the SponStaking contract on the home chain (settings.STAKING_CHAIN_KEY)
mirrored into the providers' stake record.

`stake_chain_index` (a beat task) reads the contract's Staked, UnstakeRequested, Withdrawn and
Slashed logs from a cursor (`StakeCursor`) in bounded ranges, only up to the last final block (the
chain row's `finality` confirmations, counting the log's own block), and checks each log's block
hash against the canonical block of that height before using it. A log of an address linked with
purpose "stake" (accounts.wallets) becomes one StakeEvent (source "chain") per (chain id, tx hash,
log index); other addresses are logged and ignored. The counted stake (ProviderProfile.staked_spon)
is what the contract calls active: a stake adds, an unstake request subtracts (pending stake no
longer counts), a withdrawal changes nothing, a slash subtracts the part it took from active stake.
Admin-recorded stake (off-chain agreements, `stake_record`) stays and adds to it. Coverage and
matchability follow through `stake_coverage_refresh`, as for a recorded change.

Back-fill (`StakeBackfill`, one per current stake link): the forward scan only sees an address's
events while it is linked, so a provider who staked first and linked afterwards, or who re-links an
address after unlinking it, would lose the earlier events. Each run therefore first back-fills every
current stake link not back-filled yet: it reads the contract's logs of that address alone (the
indexed `provider` topic) from STAKING_START_BLOCK up to the cursor, in bounded ranges with the same
block-hash check, and applies them through `stake_logs_apply`, which records each log once per
(chain id, tx hash, log index): events already mirrored (for this or an earlier link) are skipped.
Its progress (`last_block`) moves after each range, so an error resumes where it stopped. Until the
back-fill has caught up with the cursor (`done_at`), the forward scan leaves that address's events to
it, so an address's events are always applied in chain order (the unstake and slash replay,
`_chain_active` and `stake_pending`, read the rows of one address and depend on that order; other
addresses' rows do not matter to them). The back-fill is marked done, and the forward scan applies a
range and moves the cursor, each under the cursor's row lock: a range is either applied by a forward
run that sees the back-fill done, or read by the back-fill before it is done, never neither.

Unlinking (kept as before): the address's events mirrored while it was linked stay in the provider's
history and counted stake; its later events are ignored while it is not linked. Should it be linked
again (by anyone), the new link's back-fill mirrors the events that were ignored, for the user who
linked it; an address that moves to another provider brings only the events not mirrored yet. A
back-filled row's `balance_after` is the provider's balance when it was applied; its `created_at` is
its block's time, so the history stays in chain order.

The page's part (`stake_wallet`) gives the linked address, the pending unstakes (replayed from the
chain rows) and the wallet's calldata, computed here as billing.deposit_pages does for top-ups.
On a devnet, `stake_faucet` sends test $SPON from the devnet treasury to the linked address.

Network calls happen between short transactions, never inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from accounts.models import User, WalletLink, WalletPurpose
from accounts.wallets import wallet_current
from billing.deposit_pages import encode_call
from chain.evm.client import ChainUnavailable, rpc_url_for, web3_for
from chain.models import Chain
from chain.sender import Rpc, RpcError
from core import clock
from core.errors import ApplicationError
from providers.models import (
    SPON_DECIMALS,
    ProviderProfile,
    StakeBackfill,
    StakeCursor,
    StakeEvent,
    StakeEventKind,
    StakeSource,
)
from providers.services import spon_to_base_units, stake_coverage_refresh

logger = logging.getLogger(__name__)

MAX_ROUNDS = 5  # ranges read per run; an indexer far behind catches up over several runs
MAX_BACKFILL_ROUNDS = 20  # back-fill ranges per run, all links together; the rest waits for the next run

EVENT_SIGNATURES = {
    "Staked(address,uint256,uint256)": StakeEventKind.STAKE,
    "UnstakeRequested(address,uint256,uint64)": StakeEventKind.UNSTAKE,
    "Withdrawn(address,uint256)": StakeEventKind.WITHDRAW,
    "Slashed(address,uint256,bytes32)": StakeEventKind.SLASH,
}
TOPICS = {"0x" + keccak(text=signature).hex(): kind for signature, kind in EVENT_SIGNATURES.items()}


@dataclass(frozen=True)
class StakeLog:
    kind: str
    address: str  # checksummed provider address (the staker)
    amount: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    unlock_at: int | None = None  # UnstakeRequested
    reason_hash: str = ""  # Slashed


@dataclass
class StakeIndexResult:
    chain: str
    head: int = 0
    final_block: int = 0
    from_block: int | None = None
    to_block: int | None = None
    recorded: int = 0  # forward scan and back-fill together
    ignored: int = 0
    backfilled: int = 0  # of `recorded`, by the back-fill
    backfill_pending: int = 0  # stake links whose back-fill has not caught up yet
    skipped: str = ""  # why nothing was read (no chain row, no contract address)


# --- Where the contract is -----------------------------------------------------------------------


def staking_chain() -> Chain | None:
    return Chain.objects.filter(key=settings.STAKING_CHAIN_KEY, enabled=True).first()


def staking_address() -> str:
    """STAKING_CONTRACT_ADDRESS, or on a devnet where it is unset, SponStaking's deterministic address
    for the devnet deployer (chain.evm.artifacts.deploy_all). Empty: staking on chain is off."""
    if settings.STAKING_CONTRACT_ADDRESS:
        return to_checksum_address(settings.STAKING_CONTRACT_ADDRESS)
    if settings.CHAIN_DEVNET:
        from chain.devnet import DEPLOYER
        from chain.evm.artifacts import predicted_addresses

        return predicted_addresses(DEPLOYER.address)["SponStaking"]
    return ""


# --- Reading the logs ----------------------------------------------------------------------------


def _word(topic: str) -> bytes:
    return bytes.fromhex(topic.removeprefix("0x"))


def decode_stake_log(raw: dict[str, Any]) -> StakeLog | None:
    """A SponStaking log as eth_getLogs returns it (plain JSON), or None for another event."""
    topics = raw.get("topics") or []
    kind = TOPICS.get(str(topics[0]).lower()) if topics else None
    if kind is None or len(topics) < 2 or raw.get("removed"):
        return None
    address = to_checksum_address(_word(topics[1])[-20:])
    data = _word(raw.get("data") or "0x")
    unlock_at, reason_hash = None, ""
    if kind == StakeEventKind.STAKE:
        amount, _new_active = abi_decode(["uint256", "uint256"], data)
    elif kind == StakeEventKind.UNSTAKE:
        amount, unlock_at = abi_decode(["uint256", "uint64"], data)
    elif kind == StakeEventKind.SLASH:
        (amount,) = abi_decode(["uint256"], data)
        reason_hash = str(topics[2]).lower() if len(topics) > 2 else ""
    else:
        (amount,) = abi_decode(["uint256"], data)
    return StakeLog(
        kind=kind,
        address=address,
        amount=int(amount),
        tx_hash=str(raw["transactionHash"]).lower(),
        log_index=int(raw["logIndex"], 16),
        block_number=int(raw["blockNumber"], 16),
        block_hash=str(raw["blockHash"]).lower(),
        unlock_at=unlock_at,
        reason_hash=reason_hash,
    )


class _Rpc(Rpc):
    """The sender's raw JSON-RPC calls, plus the reads the stake index makes. Reading, a node's
    JSON-RPC error is as bad as no answer: the run stops and the next one starts over."""

    def call(self, method: str, params: list[Any]) -> Any:
        try:
            return super().call(method, params)
        except RpcError:
            raise ChainUnavailable(f"error from the RPC for {method}") from None

    def head(self) -> int:
        return int(self.call("eth_blockNumber", []), 16)

    def logs(self, address: str, from_block: int, to_block: int, *, provider: str = "") -> list[StakeLog]:
        """The staking contract's logs in the range; of one provider address only if given."""
        topics: list[Any] = [list(TOPICS)]
        if provider:  # the indexed `provider` argument: topic 1 of every stake event
            topics.append("0x" + "00" * 12 + provider.lower().removeprefix("0x"))
        found = self.call(
            "eth_getLogs",
            [{"address": address, "fromBlock": hex(from_block), "toBlock": hex(to_block), "topics": topics}],
        )
        if not isinstance(found, list):
            raise ChainUnavailable("eth_getLogs gave no list")
        decoded = (decode_stake_log(raw) for raw in found)
        return sorted((log for log in decoded if log is not None), key=lambda log: (log.block_number, log.log_index))

    def block(self, number: int) -> tuple[str, datetime]:
        block = self.call("eth_getBlockByNumber", [hex(number), False])
        if not block:
            raise ChainUnavailable(f"no block {number}")
        return str(block["hash"]).lower(), datetime.fromtimestamp(int(block["timestamp"], 16), tz=UTC)

    def checked_block_times(self, logs: Sequence[StakeLog]) -> dict[int, datetime]:
        """The time of each log's block, after checking the log's block hash against the canonical one."""
        blocks = {number: self.block(number) for number in sorted({log.block_number for log in logs})}
        for log in logs:
            block_hash, _at = blocks[log.block_number]
            if block_hash != log.block_hash:  # the node answered from a fork: read the range again later
                raise ChainUnavailable(f"block {log.block_number} changed under log {log.tx_hash}#{log.log_index}")
        return {number: at for number, (_hash, at) in blocks.items()}


def _cursor(chain_id: int, address: str) -> StakeCursor:
    start = settings.STAKING_START_BLOCK - 1
    cursor, _ = StakeCursor.objects.get_or_create(
        chain_id=chain_id, defaults={"contract_address": address, "last_block": start}
    )
    if cursor.contract_address != address:  # another contract: read it from its start
        cursor.contract_address, cursor.last_block = address, start
        cursor.save(update_fields=["contract_address", "last_block", "updated_at"])
    return cursor


def stake_chain_index(*, rounds: int = MAX_ROUNDS) -> StakeIndexResult:
    """Mirror the staking contract's final events into StakeEvents; safe to run twice at once."""
    chain = staking_chain()
    address = staking_address()
    result = StakeIndexResult(chain=settings.STAKING_CHAIN_KEY)
    if chain is None or chain.chain_id is None:
        result.skipped = "no enabled EVM chain row for STAKING_CHAIN_KEY"
        return result
    if not address:
        result.skipped = "STAKING_CONTRACT_ADDRESS is not set"
        return result
    url = rpc_url_for(chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {chain.key}: set CHAIN_{chain.key.upper()}_RPC_URL.")
    rpc = _Rpc(url)
    result.head = rpc.head()
    # A block with `finality` confirmations (its own included) is final.
    result.final_block = result.head - chain.finality + 1
    cursor = _cursor(chain.chain_id, address)
    if settings.CHAIN_DEVNET and cursor.last_block > result.head:
        # A devnet that lost its state starts again at block 0: the old cursor would skip it all.
        StakeCursor.objects.filter(id=cursor.id).update(last_block=settings.STAKING_START_BLOCK - 1)
        cursor.last_block = settings.STAKING_START_BLOCK - 1
    _backfill(rpc, chain_id=chain.chain_id, contract=address, result=result)
    start = cursor.last_block + 1
    for _ in range(rounds):
        if start > result.final_block:
            break
        end = min(result.final_block, start + settings.CHAIN_SCAN_MAX_BLOCKS - 1)
        logs = rpc.logs(address, start, end)
        block_times = rpc.checked_block_times(logs)
        with transaction.atomic():
            # Under the cursor's lock: a back-fill is marked done under it too (`_backfill_finish`).
            StakeCursor.objects.select_for_update().filter(chain_id=chain.chain_id).first()
            recorded, ignored = stake_logs_apply(
                chain_id=chain.chain_id, logs=logs, block_times=block_times, contract_address=address
            )
            # Only forward: a slower run that read an older range never moves the cursor back.
            StakeCursor.objects.filter(chain_id=chain.chain_id, last_block__lt=end).update(
                last_block=end, updated_at=clock.now()
            )
        result.recorded += recorded
        result.ignored += ignored
        result.from_block = start if result.from_block is None else result.from_block
        result.to_block = end
        start = end + 1
    return result


# --- Back-filling a newly linked address ---------------------------------------------------------


def _backfill(rpc: _Rpc, *, chain_id: int, contract: str, result: StakeIndexResult) -> None:
    """Back-fill the current stake links not back-filled yet, up to the cursor (already final blocks),
    at most MAX_BACKFILL_ROUNDS ranges in all; the rest resumes at the next run."""
    done = StakeBackfill.objects.filter(chain_id=chain_id, contract_address=contract, done_at__isnull=False)
    links = (
        WalletLink.objects.filter(purpose=WalletPurpose.STAKE, revoked_at__isnull=True)
        .exclude(id__in=done.values("link_id"))
        .order_by("id")
    )
    budget = MAX_BACKFILL_ROUNDS
    for link in links:
        row, _ = StakeBackfill.objects.get_or_create(
            link=link,
            chain_id=chain_id,
            contract_address=contract,
            defaults={"address": link.address, "last_block": settings.STAKING_START_BLOCK - 1},
        )
        while True:
            target = StakeCursor.objects.filter(chain_id=chain_id).values_list("last_block", flat=True).get()
            last, done_at = StakeBackfill.objects.filter(id=row.id).values_list("last_block", "done_at").get()
            if done_at is not None:
                break
            if last >= target:
                if _backfill_finish(backfill_id=row.id, chain_id=chain_id):
                    break
                continue  # the cursor moved meanwhile: read on
            if budget <= 0:
                result.backfill_pending += 1
                break
            budget -= 1
            end = min(target, last + settings.CHAIN_SCAN_MAX_BLOCKS)
            logs = rpc.logs(contract, last + 1, end, provider=link.address)
            block_times = rpc.checked_block_times(logs)
            with transaction.atomic():
                # One back-fill of a link at a time: a second run waits here, then skips what was read.
                locked = StakeBackfill.objects.select_for_update().get(id=row.id)
                recorded = 0
                if locked.last_block < end and locked.done_at is None:
                    recorded, _ignored = stake_logs_apply(
                        chain_id=chain_id, logs=logs, block_times=block_times, contract_address=contract, backfill=link
                    )
                    locked.last_block = end
                    locked.save(update_fields=["last_block", "updated_at"])
            result.recorded += recorded
            result.backfilled += recorded


def stake_backfill_pending(*, chain_id: int, address: str) -> bool:
    """Whether a current stake link of `address` still waits for its back-fill on the chain: until it
    is done the forward scan leaves the address's events to it, so a cursor past a block does not yet
    mean that the address's events of that block were read (providers.slashing asks before it calls
    a mined slash unmirrored)."""
    done = StakeBackfill.objects.filter(chain_id=chain_id, contract_address=staking_address(), done_at__isnull=False)
    return (
        WalletLink.objects.filter(purpose=WalletPurpose.STAKE, revoked_at__isnull=True, address=address)
        .exclude(id__in=done.values("link_id"))
        .exists()
    )


def _backfill_finish(*, backfill_id: int, chain_id: int) -> bool:
    """Mark the back-fill done if it has read up to the cursor, under the cursor's row lock (a forward
    run applies a range and moves the cursor under it). False: the cursor has moved on."""
    with transaction.atomic():
        cursor = StakeCursor.objects.select_for_update().get(chain_id=chain_id)
        StakeBackfill.objects.filter(id=backfill_id, done_at__isnull=True, last_block__gte=cursor.last_block).update(
            done_at=clock.now(), updated_at=clock.now()
        )
        return StakeBackfill.objects.filter(id=backfill_id, done_at__isnull=False).exists()


# --- Applying them -------------------------------------------------------------------------------


def _chain_active(provider: ProviderProfile, address: str) -> int:
    """The provider's active stake on chain from `address`, replayed from the chain rows."""
    active = 0
    for kind, amount, from_pending in StakeEvent.objects.filter(
        provider=provider, source=StakeSource.CHAIN, address=address
    ).values_list("kind", "amount", "from_pending"):
        if kind == StakeEventKind.STAKE:
            active += int(amount)
        elif kind == StakeEventKind.UNSTAKE:
            active -= int(amount)
        elif kind == StakeEventKind.SLASH:
            active -= int(amount) - int(from_pending)
    return max(0, active)


def stake_logs_apply(
    *,
    chain_id: int,
    logs: Sequence[StakeLog],
    block_times: dict[int, datetime],
    contract_address: str,
    backfill: WalletLink | None = None,
) -> tuple[int, int]:
    """Record each log of a linked stake address once. Returns (recorded, ignored).

    The forward scan (no `backfill`) records the logs of addresses whose current link is back-filled;
    a back-fill records the logs of its link's address, while that link is current."""
    addresses = {log.address for log in logs}
    links = WalletLink.objects.filter(purpose=WalletPurpose.STAKE, revoked_at__isnull=True, address__in=addresses)
    if backfill is not None:
        links = links.filter(id=backfill.id)
    else:
        links = links.filter(
            id__in=StakeBackfill.objects.filter(
                chain_id=chain_id, contract_address=contract_address, done_at__isnull=False
            ).values("link_id")
        )
    users = dict(links.values_list("address", "user_id"))
    recorded = ignored = 0
    for log in logs:
        user_id = users.get(log.address)
        if user_id is None:
            logger.info(
                "stake log %s#%s of %s ignored: not linked, or its back-fill reads it",
                log.tx_hash,
                log.log_index,
                log.address,
            )
            ignored += 1
            continue
        try:
            event = _apply(chain_id=chain_id, user_id=user_id, log=log, at=block_times[log.block_number])
        except IntegrityError:  # another run recorded it between our check and our insert
            event = None
        if event is None:
            ignored += 1
        else:
            recorded += 1
    return recorded, ignored


@transaction.atomic
def _apply(*, chain_id: int, user_id: int, log: StakeLog, at: datetime) -> StakeEvent | None:
    profile = ProviderProfile.objects.select_for_update().filter(user_id=user_id).first()
    if profile is None:
        logger.info("stake log %s#%s: linked user #%s is no provider; ignored", log.tx_hash, log.log_index, user_id)
        return None
    key = {"source": StakeSource.CHAIN, "chain_id": chain_id, "tx_hash": log.tx_hash, "log_index": log.log_index}
    if StakeEvent.objects.filter(**key).exists():
        return None
    active = _chain_active(profile, log.address)
    from_pending = 0
    if log.kind == StakeEventKind.STAKE:
        delta = log.amount
    elif log.kind == StakeEventKind.UNSTAKE:
        delta = -min(log.amount, active)
    elif log.kind == StakeEventKind.SLASH:
        from_active = min(log.amount, active)
        from_pending, delta = log.amount - from_active, -from_active
    else:
        delta = 0
    balance = max(Decimal(0), profile.staked_spon + delta)
    profile.staked_spon = balance
    fields = ["staked_spon", "updated_at"]
    if log.kind == StakeEventKind.SLASH:
        profile.slash_count += 1
        fields.append("slash_count")
    profile.save(update_fields=fields)
    with transaction.atomic():  # a savepoint: a duplicate insert leaves the outer transaction usable
        event = StakeEvent.objects.create(
            provider=profile,
            kind=log.kind,
            amount=log.amount,
            balance_after=balance,
            reason=f"reason hash {log.reason_hash}" if log.kind == StakeEventKind.SLASH else "",
            created_at=at,
            block_number=log.block_number,
            address=log.address,
            unlock_at=datetime.fromtimestamp(log.unlock_at, tz=UTC) if log.unlock_at is not None else None,
            from_pending=from_pending,
            **key,
        )
    stake_coverage_refresh(provider=profile)
    return event


# --- The page's part -----------------------------------------------------------------------------


@dataclass
class PendingUnstake:
    amount: int
    unlock_at: datetime

    @property
    def unlocked(self) -> bool:
        return self.unlock_at <= clock.now()


def stake_pending(*, provider: ProviderProfile, address: str) -> list[PendingUnstake]:
    """The pending unstakes of `address` as the contract holds them, oldest first, replayed from the
    chain rows: a request adds one; a withdrawal pays the unlocked ones (the oldest: the cool-down is
    fixed); a slash takes what it took from pending from the latest first."""
    pending: list[PendingUnstake] = []
    rows = StakeEvent.objects.filter(provider=provider, source=StakeSource.CHAIN, address=address).order_by(
        "block_number", "log_index"
    )
    for row in rows:
        if row.kind == StakeEventKind.UNSTAKE and row.unlock_at is not None:
            pending.append(PendingUnstake(amount=int(row.amount), unlock_at=row.unlock_at))
        elif row.kind == StakeEventKind.WITHDRAW:
            paid = int(row.amount)
            while pending and paid >= pending[0].amount:
                paid -= pending.pop(0).amount
        elif row.kind == StakeEventKind.SLASH:
            taken = int(row.from_pending)
            while taken and pending:
                last = pending[-1]
                if last.amount <= taken:
                    taken -= pending.pop().amount
                else:
                    last.amount -= taken
                    taken = 0
    return pending


@dataclass
class StakeWallet:
    """What the stake page needs for the wallet: where to send what."""

    address: str = ""  # the linked stake address
    chain_key: str = ""
    chain_name: str = ""
    chain_id_hex: str = ""
    staking_address: str = ""
    token_address: str = ""
    chain_active: int = 0
    admin_recorded: int = 0
    pending: list[PendingUnstake] = field(default_factory=list)
    amount: int = 0  # the amount to approve and stake, base units
    unstake_amount: int = 0
    approve_calldata: str = ""
    stake_calldata: str = ""
    unstake_calldata: str = ""
    withdraw_calldata: str = ""
    amount_error: str = ""
    faucet: bool = False

    @property
    def ready(self) -> bool:
        return bool(self.address and self.staking_address and self.token_address and self.chain_id_hex)

    @property
    def withdrawable(self) -> int:
        return sum(p.amount for p in self.pending if p.unlocked)

    @property
    def pending_total(self) -> int:
        return sum(p.amount for p in self.pending)


def faucet_enabled() -> bool:
    return bool(settings.DEBUG and settings.CHAIN_DEVNET)


def _amount(text: str, default: int) -> tuple[int, str]:
    if not text:
        return default, ""
    try:
        return int(spon_to_base_units(text)), ""
    except ApplicationError as exc:
        return default, exc.message


def stake_wallet(
    *, provider: ProviderProfile, user: User, amount_text: str = "", unstake_text: str = "", default_amount: int = 0
) -> StakeWallet:
    link = wallet_current(user=user).get(WalletPurpose.STAKE)
    chain = staking_chain()
    wallet = StakeWallet(faucet=faucet_enabled())
    if link is not None:
        wallet.address = link.address
        wallet.pending = stake_pending(provider=provider, address=link.address)
        wallet.chain_active = _chain_active(provider, link.address)
    wallet.admin_recorded = max(0, int(provider.staked_spon) - wallet.chain_active)
    address = staking_address()
    if chain is None or chain.chain_id is None or not address:
        return wallet
    wallet.chain_key, wallet.chain_name, wallet.chain_id_hex = chain.key, chain.name, hex(chain.chain_id)
    wallet.staking_address = address
    wallet.token_address = to_checksum_address(chain.spon_token_address) if chain.spon_token_address else ""
    wallet.amount, error = _amount(amount_text, default_amount or 10**SPON_DECIMALS)
    wallet.unstake_amount, unstake_error = _amount(unstake_text, wallet.chain_active)
    wallet.amount_error = error or unstake_error
    wallet.approve_calldata = encode_call("SponToken", "approve", [address, wallet.amount])
    wallet.stake_calldata = encode_call("SponStaking", "stake", [wallet.amount])
    if wallet.unstake_amount:
        wallet.unstake_calldata = encode_call("SponStaking", "requestUnstake", [wallet.unstake_amount])
    wallet.withdraw_calldata = encode_call("SponStaking", "withdraw", [])
    return wallet


# --- The devnet faucet ---------------------------------------------------------------------------


def stake_faucet(*, user: User, wait_seconds: float = 15) -> str:
    """Send STAKE_FAUCET_SPON test $SPON from the devnet treasury (anvil's public test key) to the
    user's linked stake address, and 0.1 ETH for gas if it has less. Devnet only (404 elsewhere).
    Returns the transaction hash."""
    if not faucet_enabled():
        raise Http404("No faucet here.")

    from chain.devnet import TREASURY
    from chain.evm import artifacts

    link = wallet_current(user=user).get(WalletPurpose.STAKE)
    if link is None:
        raise ApplicationError("Link a stake address first.", status=409)
    chain = staking_chain()
    if chain is None or not chain.spon_token_address:
        raise ApplicationError("The devnet's home chain is not running.", status=503)
    w3 = web3_for(rpc_url_for(chain))
    try:
        chain_id = w3.eth.chain_id
        nonce = w3.eth.get_transaction_count(TREASURY.address, "pending")
        token = artifacts.contract(w3, "SponToken", chain.spon_token_address)
        amount = settings.STAKE_FAUCET_SPON * 10**SPON_DECIMALS
        base = {"from": TREASURY.address, "chainId": chain_id, "gas": 100_000}
        transfer = token.functions.transfer(link.address, amount).build_transaction({**base, "nonce": nonce})

        def send(transaction: dict[str, Any]) -> bytes:
            signed = w3.eth.account.sign_transaction(transaction, TREASURY.private_key)
            return w3.eth.send_raw_transaction(signed.raw_transaction)

        hashes = [send(transfer)]
        if w3.eth.get_balance(link.address) < 10**17:  # gas for approve, stake, unstake, withdraw
            gas = {**base, "nonce": nonce + 1, "to": link.address, "value": 10**17, "gas": 21_000}
            gas.update(_fees(w3))
            hashes.append(send(gas))
        for tx_hash in hashes:
            w3.eth.wait_for_transaction_receipt(tx_hash, timeout=wait_seconds, poll_latency=0.2)
    except (OSError, ValueError) as exc:
        raise ApplicationError(f"The devnet did not take it ({exc.__class__.__name__}).", status=503) from None
    return "0x" + hashes[0].hex().removeprefix("0x")


def _fees(w3: Any) -> dict[str, int]:
    block = w3.eth.get_block("latest")
    base_fee = int(block.get("baseFeePerGas") or 0)
    return {"maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
