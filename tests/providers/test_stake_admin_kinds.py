"""An admin records stake, unstake or slash (off-chain agreements); a withdrawal of pending unstakes
happens on chain only, so the admin neither offers it nor can record it (it would have lowered the
counted stake a second time)."""

from __future__ import annotations

import pytest

from core.errors import ApplicationError
from providers.admin.stake import StakeEventForm
from providers.models import StakeEventKind
from providers.services import stake_record
from tests.factories import make_provider

pytestmark = pytest.mark.django_db


def test_the_admin_form_offers_stake_unstake_and_slash_only():
    offered = {value for value, _label in StakeEventForm().fields["kind"].choices if value}
    assert offered == {StakeEventKind.STAKE, StakeEventKind.UNSTAKE, StakeEventKind.SLASH}


def test_stake_record_refuses_a_withdrawal():
    provider = make_provider()
    stake_record(provider=provider, kind=StakeEventKind.STAKE, amount="100")
    with pytest.raises(ApplicationError):
        stake_record(provider=provider, kind=StakeEventKind.WITHDRAW, amount="50")
    provider.refresh_from_db()
    assert provider.staked_spon == 100 * 10**18
