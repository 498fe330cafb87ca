"""The deployment tests' market and renter, for the cross-cutting tests here."""

from tests.deployment_pages.conftest import owner  # noqa: F401 - a fixture
from tests.deployments.conftest import market  # noqa: F401 - a fixture
