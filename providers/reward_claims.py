"""Claims of era rewards (issue 22 part 5): the cumulative rewards tree, its root on chain, a
provider's proof.

After each era's rewards are written (providers.era_rewards), `rewards_tree_build` gives every
NodeReward with $SPON and no address yet the provider's current stake address (accounts.wallets,
purpose "stake"), once: an address, once assigned, never changes, so the amount of an address only
grows as eras are added. Then it builds the tree of Σ $SPON per address over every NodeReward with an
address (spheron_sdk.rewards_tree: OpenZeppelin's StandardMerkleTree of (address, uint256
cumulative)) and stores it as a RewardTree, unless the latest tree has that root already (a re-run
creates nothing). Rewards of a provider with no stake address wait, unassigned, and join the tree
of the first build after the provider links one.

`rewards_trees_run` (beat: `providers.tasks.run_reward_trees`) sets the newest built tree's root on
RewardDistributor: `setRoot(root, era)` recorded through chain.sender (purpose "reward-root",
reference "reward-root:<tree id>") by the key in the environment variable REWARD_ROOT_KEY_ENV names
(default CHAIN_RECORDER_KEY, which holds ROOT_SETTER_ROLE on a devnet); the sender's own beat task
sends it; the next pass marks the tree published once mined, or failed with the sender's reason.
Older built trees are superseded (failed, "superseded by tree N"): the newest is cumulative, so it
pays everything they would have. The era number sent is the day number (days since 1970-01-01) of
the end of the newest era the tree holds, never below the distributor's current `era()` (the
contract refuses an earlier one). Without the key, the chain or the contract the trees wait, and
the pass logs why once.

`provider_rewards` is what the dashboard and `GET /api/v1/provider/rewards` show: per-era totals and
receipts, the latest published tree's amount and proof for the provider's address, and what the
distributor has paid that address already (`claimed(address)`, read over JSON-RPC).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models import Max, Sum
from eth_utils import to_checksum_address
from spheron_sdk.rewards_tree import RewardsTree, RewardsTreeError

from accounts.models import WalletLink, WalletPurpose
from billing.deposit_pages import encode_call
from chain.evm.client import ChainUnavailable, rpc_url_for, web3_for
from chain.keys import key_from_env
from chain.models import Chain, ChainTransaction, TxStatus
from chain.rates import quote, usd_micros_for
from chain.sender import transaction_record
from core import clock
from providers.models import (
    SPON_DECIMALS,
    NodeReward,
    ProviderProfile,
    RewardEra,
    RewardTree,
    RewardTreeStatus,
)

logger = logging.getLogger(__name__)

PURPOSE = "reward-root"
ROOT = re.compile(r"0x[0-9a-fA-F]{64}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RPC_TIMEOUT_SECONDS = 5  # a page waits at most this for the distributor's `claimed`
MAX_ERAS = 90  # per request of provider_rewards


# --- Where the distributor is ----------------------------------------------------------------------


def reward_chain() -> Chain | None:
    """The home chain's row (REWARD_CHAIN_KEY, default STAKING_CHAIN_KEY), enabled, or None."""
    key = getattr(settings, "REWARD_CHAIN_KEY", "") or settings.STAKING_CHAIN_KEY
    return Chain.objects.filter(key=key, enabled=True).first()


def distributor_address() -> str:
    """REWARD_DISTRIBUTOR_ADDRESS, or on a devnet where it is unset, RewardDistributor's CREATE2
    address for the devnet deployer (chain.evm.artifacts.deploy_all). Empty: claims are off."""
    configured = getattr(settings, "REWARD_DISTRIBUTOR_ADDRESS", "")
    if configured:
        return to_checksum_address(configured)
    if settings.CHAIN_DEVNET:
        from chain.devnet import DEPLOYER
        from chain.evm.artifacts import predicted_addresses

        return predicted_addresses(DEPLOYER.address)["RewardDistributor"]
    return ""


def root_key_env() -> str:
    """The name of the environment variable holding the root setter's key."""
    return getattr(settings, "REWARD_ROOT_KEY_ENV", "CHAIN_RECORDER_KEY")


def _rpc_call(chain: Chain, to: str, data: str) -> str:
    """eth_call at the latest block; raises ChainUnavailable when the node does not answer."""
    url = rpc_url_for(chain)
    if not url:
        raise ChainUnavailable(f"No RPC URL for {chain.key}.")
    w3 = web3_for(url, timeout=RPC_TIMEOUT_SECONDS)
    try:
        answer = w3.provider.make_request("eth_call", [{"to": to, "data": data}, "latest"])
    except Exception as exc:  # connection refused, timeouts, bad answers: all "not reachable now"
        raise ChainUnavailable(f"{exc.__class__.__name__} from the RPC (eth_call)") from None
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, str) or not result.startswith("0x") or len(result) < 66:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ChainUnavailable(f"eth_call answered {error or result!r}")
    return result


def _read_uint(chain: Chain, contract: str, function: str, args: list) -> int:
    return int(_rpc_call(chain, contract, encode_call("RewardDistributor", function, args))[2:66], 16)


# --- Building the tree ----------------------------------------------------------------------------


def _stake_addresses(provider_ids: list[int]) -> dict[int, str]:
    """{provider id: checksummed current stake address} of those providers that have one."""
    users = dict(ProviderProfile.objects.filter(id__in=provider_ids).values_list("user_id", "id"))
    links = WalletLink.objects.filter(user_id__in=users, purpose=WalletPurpose.STAKE, revoked_at__isnull=True)
    rows = links.values_list("user_id", "address")
    return {users[user_id]: to_checksum_address(address) for user_id, address in rows}


def _cumulative_amounts() -> dict[str, int]:
    """{address: Σ spon} over every NodeReward with an address. Summed by PostgreSQL; on SQLite base
    units are text (core.fields.BaseUnitsField), which SQL cannot add exactly, so Python adds them."""
    rows = NodeReward.objects.exclude(address="")
    totals: dict[str, int] = defaultdict(int)
    if connection.vendor == "postgresql":
        for address, total in rows.values("address").annotate(total=Sum("spon")).values_list("address", "total"):
            totals[to_checksum_address(address)] += int(total or 0)
    else:
        for address, spon in rows.values_list("address", "spon").iterator(chunk_size=5000):
            totals[to_checksum_address(address)] += int(spon)
    return {address: total for address, total in totals.items() if total > 0}


def _latest_tree(*, statuses: tuple[str, ...] | None = None) -> RewardTree | None:
    trees = RewardTree.objects.all()
    if statuses is not None:
        trees = trees.filter(status__in=statuses)
    return trees.order_by("-created_at", "-id").first()


def rewards_tree_build(*, era: RewardEra, now: datetime | None = None) -> RewardTree | None:
    """Assigns addresses to unassigned rewards and stores the cumulative tree after `era` (see the
    module's docstring). Returns the tree created, or the latest one when it already has this root
    (nothing is created), or None when no reward has an address yet. One database transaction."""
    now = now or clock.now()
    with transaction.atomic():
        # One build at a time (the era close and an admin's re-run may overlap): the oldest era row
        # is the lock, whichever era is built.
        RewardEra.objects.select_for_update().order_by("started_at").values_list("id", flat=True).first()
        unassigned = NodeReward.objects.filter(address="", spon__gt=0)
        provider_ids = list(unassigned.values_list("provider_id", flat=True).distinct())
        for provider_id, address in _stake_addresses(provider_ids).items():
            unassigned.filter(provider_id=provider_id).update(address=address)
        amounts = _cumulative_amounts()
        if not amounts:
            return None
        built = RewardsTree.build(amounts)
        latest = _latest_tree(statuses=(RewardTreeStatus.BUILT, RewardTreeStatus.SENDING, RewardTreeStatus.PUBLISHED))
        if latest is not None and latest.root == built.root:
            return latest
        fields = {
            "dump": built.dump(),
            "total": sum(amounts.values()),
            "status": RewardTreeStatus.BUILT,
            "chain_tx": None,
            "failure_reason": "",
            "created_at": now,
            "published_at": None,
        }
        # The same root for the same era again (its tree failed, or a re-run came back to it): that
        # row is the tree again, to be sent anew.
        tree, _created = RewardTree.objects.update_or_create(era=era, root=built.root, defaults=fields)
    return tree


# --- Setting the root on chain --------------------------------------------------------------------


@dataclass
class TreesRunResult:
    published: int = 0
    failed: int = 0
    superseded: int = 0
    recorded: int = 0  # the tree whose setRoot was recorded for the sender, if any
    waiting: str = ""  # why a built tree was not recorded


_told: set[str] = set()  # the reasons for waiting this process has logged already


def _wait(result: TreesRunResult, why: str) -> TreesRunResult:
    result.waiting = why
    if why not in _told:
        _told.add(why)
        logger.warning("rewards trees: a built tree waits: %s", why)
    return result


def set_root_calldata(*, root: str, era_number: int) -> str:
    """`setRoot(bytes32 root, uint256 newEra)`."""
    return encode_call("RewardDistributor", "setRoot", [bytes.fromhex(root.removeprefix("0x")), int(era_number)])


def onchain_era_of(tx: ChainTransaction | None) -> int | None:
    """The era number a setRoot transaction sent (its calldata's last word)."""
    if tx is None or len(tx.data) != 2 + 8 + 128:
        return None
    return int(tx.data[-64:], 16)


def _day_number(at: datetime) -> int:
    return (at - EPOCH).days


def tree_era_number(tree: RewardTree) -> int:
    """The day number of the end of the newest era with an addressed reward (the tree's content),
    and at least that of the tree's own era."""
    newest = RewardEra.objects.filter(node_rewards__address__gt="").aggregate(end=Max("ended_at"))["end"]
    return max(_day_number(tree.era.ended_at), _day_number(newest) if newest else 0)


def _reference(tree: RewardTree) -> str:
    """The send's idempotency key: "reward-root:<id>", with a suffix when this row was sent before
    (a failed tree rebuilt under the same root): a new transaction, not the failed row again."""
    base = f"{PURPOSE}:{tree.id}"
    reference, attempt = base, 1
    while ChainTransaction.objects.filter(purpose=PURPOSE, reference=reference).exists():
        attempt += 1
        reference = f"{base}:{attempt}"
    return reference


def rewards_trees_reconcile(result: TreesRunResult | None = None) -> TreesRunResult:
    """Trees whose setRoot the sender settled: mined → published; failed or replaced → failed."""
    result = result or TreesRunResult()
    sending = RewardTree.objects.filter(status=RewardTreeStatus.SENDING, chain_tx__isnull=False)
    for tree in sending.select_related("chain_tx"):
        tx = tree.chain_tx
        if tx.status == TxStatus.MINED:
            result.published += RewardTree.objects.filter(id=tree.id, status=RewardTreeStatus.SENDING).update(
                status=RewardTreeStatus.PUBLISHED, published_at=clock.now()
            )
        elif tx.status in (TxStatus.FAILED, TxStatus.REPLACED):
            why = tx.revert_reason or tx.error or f"the transaction was {tx.get_status_display().lower()}"
            result.failed += RewardTree.objects.filter(id=tree.id, status=RewardTreeStatus.SENDING).update(
                status=RewardTreeStatus.FAILED, failure_reason=f"setRoot: {why}"[:500]
            )
    return result


def rewards_trees_run() -> dict[str, Any]:
    """The beat task's pass: settle what the sender settled, then record setRoot of the newest built
    tree (older built ones superseded). One tree on its way at a time."""
    result = rewards_trees_reconcile()
    if RewardTree.objects.filter(status=RewardTreeStatus.SENDING).exists():
        return asdict(result)
    newest = _latest_tree(statuses=(RewardTreeStatus.BUILT, RewardTreeStatus.PUBLISHED))
    older_built = RewardTree.objects.filter(status=RewardTreeStatus.BUILT)
    if newest is not None:
        older_built = older_built.exclude(id=newest.id)
    result.superseded = older_built.update(
        status=RewardTreeStatus.FAILED,
        failure_reason=f"superseded by tree {newest.id}: it holds every era of this one" if newest else "superseded",
    )
    if newest is None or newest.status != RewardTreeStatus.BUILT:
        return asdict(result)
    key_env = root_key_env()
    try:
        key = key_from_env(key_env)
    except ImproperlyConfigured as exc:  # anvil's public test keys outside DEBUG
        return asdict(_wait(result, str(exc)))
    if not key:
        return asdict(_wait(result, f"{key_env} is not set"))
    chain, contract = reward_chain(), distributor_address()
    if chain is None or chain.chain_id is None:
        return asdict(_wait(result, "no enabled chain row for the home chain (REWARD_CHAIN_KEY / STAKING_CHAIN_KEY)"))
    if not contract:
        return asdict(_wait(result, "REWARD_DISTRIBUTOR_ADDRESS is not set"))
    try:
        current = _read_uint(chain, contract, "era", [])
    except ChainUnavailable as exc:
        return asdict(_wait(result, f"the home chain did not answer: {exc}"))
    era_number = max(tree_era_number(newest), current)
    _told.clear()
    with transaction.atomic():
        tree = RewardTree.objects.select_for_update().filter(id=newest.id, status=RewardTreeStatus.BUILT).first()
        if tree is None:
            return asdict(result)  # another worker took it
        tx = transaction_record(
            chain=chain,
            purpose=PURPOSE,
            reference=_reference(tree),
            to=contract,
            data=set_root_calldata(root=tree.root, era_number=era_number),
            sender_key_env=key_env,
        )
        tree.chain_tx, tree.status, tree.failure_reason = tx, RewardTreeStatus.SENDING, ""
        tree.save(update_fields=["chain_tx", "status", "failure_reason"])
        result.recorded = tree.id
    return asdict(result)


# --- Reads ---------------------------------------------------------------------------------------


def latest_published_tree() -> RewardTree | None:
    return (
        RewardTree.objects.filter(status=RewardTreeStatus.PUBLISHED)
        .select_related("era", "chain_tx__chain")
        .order_by("-created_at", "-id")
        .first()
    )


def published_tree_by_root(root: str) -> RewardTree | None:
    """The newest published tree with this root (0x and 64 hex digits, any case), or None."""
    if not isinstance(root, str) or not ROOT.fullmatch(root):
        return None
    return (
        RewardTree.objects.filter(status=RewardTreeStatus.PUBLISHED, root=root.lower())
        .select_related("era", "chain_tx__chain")
        .order_by("-created_at", "-id")
        .first()
    )


def tree_document(tree: RewardTree) -> dict[str, Any]:
    """The published file: the tree as StandardMerkleTree.dump() (format, leafEncoding, tree,
    values: what `StandardMerkleTree.load` and spheron_sdk's `RewardsTree.load` read; the extra keys
    are ignored by both), with the root, the era and where the root was set."""
    tx = tree.chain_tx
    return {
        **tree.dump,
        "root": tree.root,
        "era": {
            "started_at": tree.era.started_at.isoformat(),
            "ended_at": tree.era.ended_at.isoformat(),
            "onchain_era": onchain_era_of(tx),
        },
        "total": str(int(tree.total)),
        "published_at": tree.published_at.isoformat() if tree.published_at else None,
        "chain_id": tx.chain.chain_id if tx is not None else None,
        "distributor": tx.to if tx is not None else None,
        "set_root_tx": tx.tx_hash if tx is not None else None,
    }


def spon_text(base_units: int) -> str:
    """Whole $SPON as an exact decimal string ('1.5', '0', '12000')."""
    value = Decimal(int(base_units)).scaleb(-SPON_DECIMALS)
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _era_rows(provider: ProviderProfile, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    era_ids = list(
        NodeReward.objects.filter(provider=provider)
        .values_list("era_id", "era__started_at")
        .distinct()
        .order_by("-era__started_at")
    )
    page = [era_id for era_id, _ in era_ids[offset : offset + limit]]
    eras = {era.id: era for era in RewardEra.objects.filter(id__in=page)}
    rewards = NodeReward.objects.filter(provider=provider, era_id__in=page).select_related("node")
    by_era: dict[int, list[NodeReward]] = defaultdict(list)
    for reward in rewards.order_by("node_id"):
        by_era[reward.era_id].append(reward)
    rows = []
    for era_id in page:
        era, items = eras[era_id], by_era[era_id]
        spon = sum(int(item.spon) for item in items)
        rows.append(
            {
                "started_at": era.started_at,
                "ended_at": era.ended_at,
                "points": sum((item.points for item in items), Decimal(0)),
                "spon": spon,
                "spon_usd_micros": sum(item.spon_usd_micros for item in items),
                "floor_topup_micros": sum(item.floor_topup_micros for item in items),
                "receipts": [
                    {
                        "node_id": item.node_id,
                        "node_name": item.node.name,
                        "points": item.points,
                        "spon": int(item.spon),
                        "spon_usd_micros": item.spon_usd_micros,
                        "address": item.address,
                        "receipt": item.receipt,
                    }
                    for item in items
                ],
            }
        )
    return rows, len(era_ids)


def _claimed(chain: Chain | None, contract: str, address: str) -> tuple[int | None, str]:
    if chain is None or not contract:
        return None, "Claims on chain are not configured on this server: what was claimed cannot be read."
    try:
        return _read_uint(chain, contract, "claimed", [address]), ""
    except ChainUnavailable as exc:
        return None, f"The home chain did not answer ({exc}): what was claimed already is unknown for now."


def provider_rewards(provider: ProviderProfile, *, limit: int = 10, offset: int = 0) -> dict[str, Any]:
    """The provider's rewards: eras (newest first, `limit` from `offset`) with their receipts, and
    the claim of the current stake address against the latest published tree. Amounts in base units
    (int) and micro-USD; `claimed` and `claimable` are None when the chain cannot be read (`note`
    says why)."""
    limit = max(1, min(int(limit), MAX_ERAS))
    offset = max(0, int(offset))
    eras, era_count = _era_rows(provider, limit=limit, offset=offset)
    link = WalletLink.objects.filter(
        user_id=provider.user_id, purpose=WalletPurpose.STAKE, revoked_at__isnull=True
    ).first()
    address = to_checksum_address(link.address) if link is not None else ""
    spon_rows = list(NodeReward.objects.filter(provider=provider).values_list("address", "spon"))
    earned = sum(int(spon) for _, spon in spon_rows)
    unassigned = sum(int(spon) for assigned, spon in spon_rows if not assigned)
    chain, contract = reward_chain(), distributor_address()
    tree = latest_published_tree()
    cumulative, proof = 0, []
    claimed: int | None = None
    note = ""
    if tree is not None and address:
        try:
            loaded = RewardsTree.load(tree.dump)
        except RewardsTreeError as exc:  # a stored tree that does not check: say so, never a 500
            logger.error("rewards tree %s does not load: %s", tree.id, exc)
            loaded = None
            note = "The published rewards tree could not be read; an admin has been told."
        if loaded is not None:
            try:
                cumulative, proof = loaded.amount(address), loaded.proof(address)
            except KeyError:
                cumulative, proof = 0, []
    if address:
        claimed, claim_note = _claimed(chain, contract, address)
        note = note or claim_note
    claimable = max(0, cumulative - claimed) if claimed is not None else None
    rate = quote("SPON")
    claimable_usd = (
        usd_micros_for(claimable, decimals=SPON_DECIMALS, usd_per_unit=rate.usd_per_unit)
        if rate is not None and claimable is not None
        else None
    )
    other_addresses = sorted(
        {to_checksum_address(assigned) for assigned, _ in spon_rows if assigned} - ({address} if address else set())
    )
    return {
        "address": address,
        "chain": chain,
        "distributor": contract,
        "tree": tree,
        "cumulative": cumulative,
        "proof": proof,
        "claimed": claimed,
        "claimable": claimable,
        "claimable_usd_micros": claimable_usd,
        "spon_usd_rate": rate.usd_per_unit if rate is not None else None,
        "note": note,
        "earned": earned,
        "unassigned": unassigned,
        "other_addresses": other_addresses,
        "eras": eras,
        "era_count": era_count,
        "limit": limit,
        "offset": offset,
    }


def claim_calldata(*, address: str, cumulative: int, proof: list[str]) -> str:
    """`claim(address account, uint256 cumulativeAmount, bytes32[] proof)`."""
    words = [bytes.fromhex(node.removeprefix("0x")) for node in proof]
    return encode_call("RewardDistributor", "claim", [address, int(cumulative), words])
