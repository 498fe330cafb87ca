"""API keys: created and revoked on the account page, used as `Authorization: Bearer <key>`.

Only a SHA-256 hash of a key is stored, so a key is shown once, when it is created. Keys are
long random strings (256 bits), so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.models import ApiKey, User
from core.errors import ApplicationError

KEY_PREFIX = "sph_"
PREFIX_LENGTH = 12  # "sph_" and 8 random characters: enough to tell keys apart in a list
MAX_KEY_LENGTH = 100  # a real key is 47 characters; anything longer is not worth hashing
MAX_ACTIVE_KEYS = 25
LABEL_MAX_LENGTH = ApiKey._meta.get_field("label").max_length
# Writing last_used_at on every request would turn each API read into a write; a minute is precise enough.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _clean_label(label: str) -> str:
    label = " ".join((label or "").split())
    if not label:
        raise ApplicationError("Give the key a label, e.g. where it is used.", {"field": "label"})
    if len(label) > LABEL_MAX_LENGTH:
        raise ApplicationError(f"A label has at most {LABEL_MAX_LENGTH} characters.", {"field": "label"})
    if any(ord(ch) < 32 for ch in label):
        raise ApplicationError("A label cannot contain control characters.", {"field": "label"})
    return label


def api_key_create(*, user: User, label: str) -> tuple[ApiKey, str]:
    """A new key for `user`: the row and the full key, which is never available again."""
    label = _clean_label(label)
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE_KEYS:
        raise ApplicationError(
            f"You have {MAX_ACTIVE_KEYS} active keys, the most allowed. Revoke one you no longer use.",
            {"field": "label"},
            status=409,
        )
    for _attempt in range(3):
        raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    user=user, label=label, prefix=raw_key[:PREFIX_LENGTH], key_hash=key_hash(raw_key)
                )
        except IntegrityError:  # the 8-character prefix is unique; a clash is rare but possible
            continue
        return api_key, raw_key
    raise RuntimeError("could not generate a unique API key prefix")


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-id")


def get_api_key_for_user(*, user: User, key_id: int) -> ApiKey:
    """The user's own key; another user's key is a 404, as if it did not exist."""
    api_key = ApiKey.objects.filter(user=user, id=key_id).first()
    if api_key is None:
        raise Http404("No such API key.")
    return api_key


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    """Revoke one of the user's keys (revoking twice keeps the first time)."""
    api_key = get_api_key_for_user(user=user, key_id=key_id)
    ApiKey.objects.filter(id=api_key.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db()
    return api_key


def api_key_authenticate(*, raw_key: str) -> User | None:
    """The active user owning this active key, or None. Marks the key used (at most once a minute)."""
    if not raw_key.startswith(KEY_PREFIX) or len(raw_key) > MAX_KEY_LENGTH:
        return None
    api_key = (
        ApiKey.objects.select_related("user")
        .filter(key_hash=key_hash(raw_key), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(id=api_key.id).update(last_used_at=now)
    return api_key.user
