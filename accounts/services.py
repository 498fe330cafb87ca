from __future__ import annotations

from accounts.models import User
from core.errors import ApplicationError


def user_set_roles(*, user: User, is_developer: bool, is_provider: bool) -> User:
    if not (is_developer or is_provider):
        raise ApplicationError("Choose at least one role: developer, provider, or both.", {"field": "roles"})
    user.is_developer = is_developer
    user.is_provider = is_provider
    user.save(update_fields=["is_developer", "is_provider"])
    return user
