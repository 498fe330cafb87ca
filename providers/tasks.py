"""Periodic liveness work (scheduled in settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task

from providers import liveness, uptime


@shared_task(acks_late=True)
def fold_heartbeats() -> dict[str, int]:
    return liveness.fold_heartbeats()


@shared_task(acks_late=True)
def refresh_uptime() -> int:
    return uptime.refresh_uptime()


@shared_task(acks_late=True)
def close_eras() -> dict[str, object]:
    """Trust tiers, then era rewards and the rewards tree (providers.era_rewards.eras_close)."""
    from providers.era_rewards import eras_close

    return eras_close()


@shared_task(acks_late=True)
def index_stake_chain() -> dict[str, object]:
    """SponStaking's final events into the providers' stake (providers.stake_chain)."""
    from dataclasses import asdict

    from providers.stake_chain import stake_chain_index

    return asdict(stake_chain_index())


@shared_task(acks_late=True)
def run_slashes() -> dict[str, object]:
    """Decided slashes to the sender, and settled ones applied or failed (providers.slashing)."""
    from dataclasses import asdict

    from providers.slashing import slashes_run

    return asdict(slashes_run())


@shared_task(acks_late=True)
def run_reward_trees() -> dict[str, object]:
    """The newest rewards tree's root to RewardDistributor, and sent ones settled (providers.reward_claims)."""
    from providers.reward_claims import rewards_trees_run

    return rewards_trees_run()
