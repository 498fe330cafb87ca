from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra_fields) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra_fields) -> User:
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields) -> User:
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with e-mail; may rent compute (developer), offer it (provider), or both."""

    email = models.EmailField("e-mail address", unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_developer = models.BooleanField(default=True, help_text="Can rent compute.")
    is_provider = models.BooleanField(default=False, help_text="Can offer compute.")
    is_staff = models.BooleanField(default=False, help_text="Can log into the admin site.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    @property
    def roles(self) -> list[str]:
        roles = []
        if self.is_developer:
            roles.append("developer")
        if self.is_provider:
            roles.append("provider")
        if self.is_staff:
            roles.append("admin")
        return roles

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]


class ApiKeyScope(models.TextChoices):
    """What a key may do (the route table is in accounts.auth). `full` is everything the account may."""

    FULL = "full", "full"
    READ = "read", "read"
    DEPLOY = "deploy", "deploy"
    BILLING = "billing", "billing"
    PROVIDER = "provider", "provider"


def full_scopes() -> list[str]:
    """Keys made before scopes existed acted as their owner: they keep doing so."""
    return [ApiKeyScope.FULL.value]


class ApiKey(models.Model):
    """A bearer token for the API. Only a hash is stored; the key is shown once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    label = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12, unique=True, help_text="First characters, to recognise a key")
    key_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the whole key")
    scopes = models.JSONField(default=full_scopes, help_text="ApiKeyScope values, sorted")
    daily_spend_cap = models.BigIntegerField(
        null=True, blank=True, help_text="micro-USD the key may commit per UTC day (deployment holds); empty: no cap"
    )
    allowed_networks = models.JSONField(
        default=list, blank=True, help_text="Client addresses or CIDR networks the key works from; empty: any"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(daily_spend_cap__isnull=True) | models.Q(daily_spend_cap__gt=0),
                name="apikey_daily_spend_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"


class ApiKeySpend(models.Model):
    """What a key committed on one UTC day: the holds of the deployments it started, whole (a hold
    released later still counted that day). Read and raised under a row lock against the key's cap."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="spends")
    day = models.DateField()
    amount = models.BigIntegerField(default=0, help_text="micro-USD")

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "day"], name="apikeyspend_one_per_key_day"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="apikeyspend_amount_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.day}: {self.amount}"


class WalletPurpose(models.TextChoices):
    STAKE = "stake", "stake"
    PAYOUT = "payout", "payout"


class WalletNonce(models.Model):
    """A Sign-In with Ethereum (EIP-4361) nonce issued to a user for one address, chain and purpose.
    Single use: `used_at` is set by the link that consumed it."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wallet_nonces")
    nonce = models.CharField(max_length=64, unique=True)
    address = models.CharField(max_length=42, help_text="EIP-55 checksummed address it was issued for")
    chain_id = models.BigIntegerField()
    purpose = models.CharField(max_length=8, choices=WalletPurpose.choices)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-issued_at"]

    def __str__(self) -> str:
        return f"{self.nonce} ({self.purpose}, {self.address})"


class WalletLink(models.Model):
    """An EVM address a user proved they control by signing an EIP-4361 message. One current link
    per (user, purpose): a new link revokes the previous one, which stays as history."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="wallet_links")
    address = models.CharField(max_length=42, help_text="EIP-55 checksummed")
    purpose = models.CharField(max_length=8, choices=WalletPurpose.choices)
    chain_id = models.BigIntegerField(help_text="The chain id the signed message named")
    message = models.TextField(help_text="The signed EIP-4361 message, exactly as signed")
    signature = models.CharField(max_length=132)
    linked_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the current link")

    class Meta:
        ordering = ["-linked_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "purpose"],
                condition=models.Q(revoked_at__isnull=True),
                name="wallet_link_one_current_per_purpose",
            ),
            # Stake read from the chain belongs to one provider: an address stakes for one account.
            models.UniqueConstraint(
                fields=["address"],
                condition=models.Q(revoked_at__isnull=True, purpose="stake"),
                name="wallet_link_stake_address_one_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.purpose} {self.address}"
