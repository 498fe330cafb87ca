"""Slashing (issue 21 part 4): a slash the platform decides is recorded first, then sent on chain by
the slasher key, then reconciled from the sender's receipt and the mirrored Slashed event.

Where a slash goes (`slash_decide` decides it once, when the slash is recorded):

- **On chain** when staking on chain is configured here (an enabled chain row for
  STAKING_CHAIN_KEY and a SponStaking address: `stake_chain.staking_chain`/`staking_address`) and
  the provider has a current linked stake address (accounts.wallets, purpose "stake"). The slash
  takes only what that address holds in SponStaking (active stake first, then pending unstakes);
  admin-recorded stake is left alone (an admin slashes it in the stake history, `stake_record`).
- **Off chain** otherwise (no linked stake address, or no staking contract here): the provider's
  stake is what an admin recorded, so the slash is applied at once through `stake_record` in the
  same database transaction (status off_chain), capped at the recorded stake as the contract caps
  it; with nothing staked the slash is failed with that reason and nothing changes.

An on-chain slash: `slashes_run` (the beat task `providers.tasks.run_slashes`) records the
`slash(provider, amount, reasonHash)` transaction through chain.sender (purpose "slash", reference
"slash:<id>"), in the same database transaction as the slash's status "sending"; without the slasher
key in the environment (settings.SLASHER_KEY_ENV) decided slashes wait, and the pass logs it once.
The sender's own beat task sends it. Once it is mined, the stake indexer (providers.stake_chain)
mirrors its Slashed event at finality: that event alone lowers the counted stake; `slashes_run` then
links it (matched by the transaction's hash), takes the amount slashed from it and marks the slash
applied. (Should the address have been unlinked meanwhile, the indexer ignores its events: once it
has read past the transaction's block, the slash is marked applied with that note and no amount.)
A transaction that reverted (or whose nonce went elsewhere) makes the slash failed with
the sender's reason; the stake is untouched.

`reference` is the caller's idempotency key ("lease-downtime:<lease id>", "liveness:<node id>:<era
start>", "admin:<uuid4>"): a retry returns the slash already decided, and the transaction's own key
is the slash's id, so a retry never slashes twice.

The policy (issue 22): downtime during a lease slashes its value (marketplace.deployments.penalties);
SLASH_LIVENESS_REPEATS failed liveness challenges in an era slash SLASH_LIVENESS_SPON once per node and
era (`liveness_failure_slash`, a providers.hooks challenge-failure handler); `era_forfeit_reason`
says why an era's rewards are forfeited. A provider appeals an applied slash once; an upheld appeal
returns what was slashed (`appeals`).

The reason hash (bytes32 sent to the contract, emitted in Slashed) is keccak256 of the UTF-8 bytes of
`{"reason":"…","reference":"…"}`: compact JSON, keys sorted, non-ASCII as is (`reason_hash_of`).

The modules, each importing only those listed before it:

- `decide`: `slash_decide` (on chain, or applied at once off chain) and `reason_hash_of`;
- `policy`: failed liveness (`liveness_failure_slash`), era bounds, `era_forfeit_reason(s)`;
- `selectors`: the provider's slashes (`slash_list`, `get_slash_for_provider`, `slash_evidence`);
- `appeals`: `appeal_create`, `appeal_decide` and starting an upheld appeal's refund;
- `chain`: the beat pass (`slashes_run`): slashes and refunds recorded for chain.sender, then reconciled.

This package re-exports their public names: import them from `providers.slashing`.
"""

from __future__ import annotations

from providers.slashing.appeals import APPEALABLE, MAX_APPEAL, REFUND_PURPOSE, appeal_create, appeal_decide
from providers.slashing.chain import (
    PURPOSE,
    SlashRunResult,
    refunds_reconcile,
    refunds_record,
    slash_calldata,
    slashes_reconcile,
    slashes_record,
    slashes_run,
)
from providers.slashing.decide import EVIDENCE_TYPE, MAX_REASON, REFERENCE, reason_hash_of, slash_decide
from providers.slashing.policy import (
    LIVENESS_PREFIX,
    era_bounds,
    era_failed_challenges,
    era_forfeit_reason,
    era_forfeit_reasons,
    liveness_failure_slash,
    liveness_reference,
)
from providers.slashing.selectors import get_slash_for_provider, slash_evidence, slash_list

__all__ = [
    "APPEALABLE",
    "EVIDENCE_TYPE",
    "LIVENESS_PREFIX",
    "MAX_APPEAL",
    "MAX_REASON",
    "PURPOSE",
    "REFERENCE",
    "REFUND_PURPOSE",
    "SlashRunResult",
    "appeal_create",
    "appeal_decide",
    "era_bounds",
    "era_failed_challenges",
    "era_forfeit_reason",
    "era_forfeit_reasons",
    "get_slash_for_provider",
    "liveness_failure_slash",
    "liveness_reference",
    "reason_hash_of",
    "refunds_reconcile",
    "refunds_record",
    "slash_calldata",
    "slash_decide",
    "slash_evidence",
    "slash_list",
    "slashes_reconcile",
    "slashes_record",
    "slashes_run",
]
