from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Cast

from core.fields import BaseUnitsField
from core.money import exact_usd

SPON_DECIMALS = 18  # $SPON base units per token, as on chain


class Continent(models.TextChoices):
    NORTH_AMERICA = "north-america", "North America"
    SOUTH_AMERICA = "south-america", "South America"
    EUROPE = "europe", "Europe"
    ASIA = "asia", "Asia"
    MIDDLE_EAST = "middle-east", "Middle East"
    AFRICA = "africa", "Africa"
    OCEANIA = "oceania", "Oceania"


class Region(models.Model):
    """Reference data (providers/reference/regions.json). The code is the key users type."""

    code = models.SlugField(max_length=32, primary_key=True)
    name = models.CharField(max_length=100)
    continent = models.CharField(max_length=20, choices=Continent.choices, db_index=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2")
    latitude = models.DecimalField(max_digits=8, decimal_places=5)
    longitude = models.DecimalField(max_digits=8, decimal_places=5)

    class Meta:
        ordering = ["continent", "code"]

    def __str__(self) -> str:
        return f"{self.code} ({self.name})"


class GpuTier(models.TextChoices):
    """Hardware quality tiers and their reward multipliers (protocol-facts.md)."""

    ENTRY_1 = "entry-1", "Entry 1"
    ENTRY_2 = "entry-2", "Entry 2"
    LOW_1 = "low-1", "Low 1"
    LOW_2 = "low-2", "Low 2"
    MEDIUM_1 = "medium-1", "Medium 1"
    MEDIUM_2 = "medium-2", "Medium 2"
    HIGH_1 = "high-1", "High 1"
    HIGH_2 = "high-2", "High 2"
    ULTRA_HIGH_1 = "ultra-high-1", "Ultra High 1"
    ULTRA_HIGH_2 = "ultra-high-2", "Ultra High 2"
    ULTRA_HIGH_3 = "ultra-high-3", "Ultra High 3"
    CPU_BASIC = "cpu-basic", "CPU Basic"
    CPU_GENERAL = "cpu-general", "CPU General"
    CPU_HPC = "cpu-hpc", "CPU HPC"


GPU_TIER_MULTIPLIERS: dict[str, Decimal] = {
    GpuTier.ENTRY_1: Decimal("0.1"),
    GpuTier.ENTRY_2: Decimal("0.25"),
    GpuTier.LOW_1: Decimal("0.5"),
    GpuTier.LOW_2: Decimal("0.75"),
    GpuTier.MEDIUM_1: Decimal("1.0"),
    GpuTier.MEDIUM_2: Decimal("1.5"),
    GpuTier.HIGH_1: Decimal("2"),
    GpuTier.HIGH_2: Decimal("3"),
    GpuTier.ULTRA_HIGH_1: Decimal("6"),
    GpuTier.ULTRA_HIGH_2: Decimal("12"),
    GpuTier.ULTRA_HIGH_3: Decimal("15"),
    GpuTier.CPU_BASIC: Decimal("0.1"),
    GpuTier.CPU_GENERAL: Decimal("0.5"),
    GpuTier.CPU_HPC: Decimal("1.0"),
}


class GpuModel(models.Model):
    """Reference data (providers/reference/gpu_models.json). Apple silicon ranks as CPU tiers."""

    class Kind(models.TextChoices):
        GPU = "gpu", "Discrete GPU"
        APPLE = "apple", "Apple silicon (CPU tier)"
        CPU = "cpu", "CPU only (CPU tier)"

    slug = models.SlugField(max_length=40, primary_key=True, help_text="As written in specs: rtx4090, h100")
    vendor = models.CharField(max_length=40)
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.GPU)
    vram_gb = models.PositiveIntegerField(help_text="Memory per GPU; for Apple silicon, the largest unified memory")
    architecture = models.CharField(max_length=40)
    gpu_tier = models.CharField(max_length=20, choices=GpuTier.choices)
    multiplier = models.DecimalField(max_digits=5, decimal_places=2)
    launch_price_usd = models.PositiveIntegerField(null=True, blank=True, help_text="For the tier's price band")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "slug"]
        constraints = [
            models.CheckConstraint(condition=Q(vram_gb__gte=1), name="gpumodel_vram_positive"),
            models.CheckConstraint(condition=Q(multiplier__gt=0), name="gpumodel_multiplier_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class NodeMode(models.TextChoices):
    FIZZ = "fizz", "Fizz (community)"
    PROVIDER = "provider", "Provider (secure)"


class NodeStatus(models.TextChoices):
    PENDING = "pending", "Pending first heartbeat"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    DISABLED = "disabled", "Disabled by an admin"


class ProviderProfile(models.Model):
    """A user acting as a provider: owns nodes, gets paid."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="provider_profile")
    display_name = models.CharField(max_length=80)
    default_region = models.ForeignKey(Region, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    payout_evm_address = models.CharField(max_length=42, blank=True)
    payout_solana_address = models.CharField(max_length=44, blank=True)
    is_verified = models.BooleanField(default=False, help_text="Vetted datacenter provider")
    default_mode = models.CharField(max_length=10, choices=NodeMode.choices, default=NodeMode.FIZZ)
    # Provider-mode list prices, micro-USD per unit-month; GPU prices per model are ProviderGpuPrice rows.
    cpu_price_per_core_month_micros = models.BigIntegerField(default=750_000)
    memory_price_per_gb_month_micros = models.BigIntegerField(default=100_000)
    storage_price_per_gb_month_micros = models.BigIntegerField(default=10_000)
    # Mirror of the provider's staked $SPON in base units (18 decimals); StakeEvent rows are its history.
    staked_spon = BaseUnitsField(default=0)
    # Mirror of how many slash StakeEvents it has (a matchmaker input: reputation), kept by stake_record.
    slash_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name


# The "listed" rule, written once: a node a renter can rent right now. Each term is (field, lookup,
# value). LISTED (the Q of the partial indexes below and of the catalog's queries, so that they
# scan only listed nodes), `Node.is_listed` and providers.capacity's SQL are all made from it.
LISTED_TERMS: tuple[tuple[str, str, object], ...] = (
    ("status", "exact", NodeStatus.ONLINE),
    ("in_maintenance", "exact", False),
    ("stake_covered", "exact", True),
    ("available_gpus", "gt", 0),
)
LISTED = Q(**{field if lookup == "exact" else f"{field}__{lookup}": value for field, lookup, value in LISTED_TERMS})
_LOOKUPS = {"exact": lambda a, b: a == b, "gt": lambda a, b: a > b}


class Node(models.Model):
    """A machine offered on the market. Prices are integer micro-USD in their natural units."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="nodes")
    name = models.CharField(max_length=80, help_text="Host label chosen by the provider")
    mode = models.CharField(max_length=10, choices=NodeMode.choices)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="nodes")

    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="nodes")
    gpu_count = models.PositiveSmallIntegerField()
    vram_gb = models.PositiveIntegerField(help_text="Per GPU (copied from the model; Apple: unified memory)")
    gpu_tier = models.CharField(max_length=20, choices=GpuTier.choices)
    cpu_cores = models.PositiveIntegerField()
    memory_gb = models.PositiveIntegerField()
    storage_gb = models.PositiveIntegerField()
    bandwidth_mbps = models.PositiveIntegerField()

    # Per-resource prices, micro-USD: GPU per GPU-hour; the rest per unit-month (730 h).
    gpu_price_per_hour_micros = models.BigIntegerField()
    cpu_price_per_core_month_micros = models.BigIntegerField(default=750_000)
    memory_price_per_gb_month_micros = models.BigIntegerField(default=100_000)
    storage_price_per_gb_month_micros = models.BigIntegerField(default=10_000)
    # The whole node per hour, rounded once from the per-resource prices (providers.pricing).
    price_per_hour_micros = models.BigIntegerField()
    price_per_gpu_hour_micros = models.GeneratedField(
        expression=F("price_per_hour_micros") / Cast("gpu_count", models.BigIntegerField()),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )
    price_per_vram_gb_micros = models.GeneratedField(
        expression=F("price_per_hour_micros") / (Cast("gpu_count", models.BigIntegerField()) * F("vram_gb")),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )

    status = models.CharField(max_length=10, choices=NodeStatus.choices, default=NodeStatus.PENDING)
    in_maintenance = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    uptime_1d = models.FloatField(default=0.0)
    uptime_7d = models.FloatField(default=0.0)
    uptime_30d = models.FloatField(default=0.0)
    trust_tier = models.PositiveSmallIntegerField(default=7, help_text="1 (best) to 7, from uptime")
    stake_covered = models.BooleanField(
        default=False, help_text="The provider's stake covers this node's GPUs at the minimum per GPU"
    )

    # What the agent reported (registration and challenges). Demo nodes have no agent: simulated.
    is_simulated = models.BooleanField(default=False, help_text="Demo node without an agent")
    machine_id = models.CharField(max_length=64, blank=True, db_index=True)
    secret_hash = models.CharField(max_length=64, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    agent_version = models.CharField(max_length=32, blank=True)
    runtime = models.CharField(max_length=10, blank=True)
    os = models.CharField(max_length=200, blank=True)
    arch = models.CharField(max_length=32, blank=True)
    cpu_model = models.CharField(max_length=200, blank=True)
    driver_version = models.CharField(max_length=40, blank=True)
    cuda_version = models.CharField(max_length=20, blank=True)
    hardware = models.JSONField(default=dict, blank=True, help_text="Last hardware report")
    usage = models.JSONField(default=dict, blank=True, help_text="Last reported usage (folded)")
    registered_at = models.DateTimeField(null=True, blank=True)
    online_since = models.DateTimeField(null=True, blank=True)
    rewards_eligible_from = models.DateTimeField(null=True, blank=True, help_text="End of the reconnect cool-down")
    needs_review = models.BooleanField(default=False)
    review_reason = models.TextField(blank=True)

    available_gpus = models.PositiveSmallIntegerField(help_text="GPUs not leased")
    available_cpu_cores = models.PositiveIntegerField()
    available_memory_gb = models.PositiveIntegerField()
    available_storage_gb = models.PositiveIntegerField()

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(gpu_count__gte=1), name="node_gpu_count_positive"),
            models.CheckConstraint(condition=Q(vram_gb__gte=1), name="node_vram_positive"),
            models.CheckConstraint(
                condition=Q(available_gpus__lte=F("gpu_count")), name="node_available_gpus_le_count"
            ),
            models.CheckConstraint(
                condition=Q(available_cpu_cores__lte=F("cpu_cores")), name="node_available_cpu_le_total"
            ),
            models.CheckConstraint(
                condition=Q(available_memory_gb__lte=F("memory_gb")), name="node_available_mem_le_total"
            ),
            models.CheckConstraint(
                condition=Q(available_storage_gb__lte=F("storage_gb")), name="node_available_storage_le_total"
            ),
            models.CheckConstraint(condition=Q(trust_tier__gte=1, trust_tier__lte=7), name="node_trust_tier_1_7"),
            models.CheckConstraint(
                condition=Q(uptime_1d__gte=0, uptime_1d__lte=1, uptime_7d__gte=0, uptime_7d__lte=1)
                & Q(uptime_30d__gte=0, uptime_30d__lte=1),
                name="node_uptime_fraction",
            ),
            models.CheckConstraint(
                condition=Q(gpu_price_per_hour_micros__gte=0, price_per_hour_micros__gte=0)
                & Q(cpu_price_per_core_month_micros__gte=0, memory_price_per_gb_month_micros__gte=0)
                & Q(storage_price_per_gb_month_micros__gte=0),
                name="node_prices_non_negative",
            ),
            models.UniqueConstraint(fields=["provider", "name"], name="node_unique_name_per_provider"),
        ]
        # Catalog indexes: every catalog query carries LISTED, and orders by one sort key with
        # the id as tie-breaker (keyset pagination), so each index is (filter?, sort key, id).
        indexes = [
            models.Index(fields=["price_per_hour_micros", "id"], condition=LISTED, name="node_listed_price"),
            models.Index(fields=["price_per_vram_gb_micros", "id"], condition=LISTED, name="node_listed_price_vram"),
            models.Index(fields=["uptime_30d", "id"], condition=LISTED, name="node_listed_uptime"),
            models.Index(fields=["vram_gb", "id"], condition=LISTED, name="node_listed_vram"),
            models.Index(
                fields=["gpu_model", "price_per_hour_micros", "id"], condition=LISTED, name="node_listed_model_price"
            ),
            models.Index(
                fields=["gpu_model", "price_per_gpu_hour_micros"], condition=LISTED, name="node_listed_model_gpu_price"
            ),
            models.Index(
                fields=["region", "price_per_hour_micros", "id"], condition=LISTED, name="node_listed_region_price"
            ),
            # Multi-GPU boxes are few and dear: without this, "min_gpus=8 by price" walks the whole
            # price index past every single-GPU node before it reaches them.
            models.Index(
                fields=["price_per_hour_micros", "id"],
                condition=LISTED & Q(available_gpus__gte=2),
                name="node_listed_multi_gpu_price",
            ),
            # The matchmaker's candidates for one GPU model (marketplace.matching.services.candidate_rows:
            # ORDER BY gpu_price_per_hour_micros, id LIMIT 50): walked in price order until enough
            # nodes pass the order's other filters, instead of fetching and sorting every listed node
            # of the model (bench/match.py: 20k RTX 4090s at 100k nodes, 28 ms → 1.7 ms).
            models.Index(
                fields=["gpu_model", "gpu_price_per_hour_micros", "id"],
                condition=LISTED,
                name="node_listed_model_gpu_hour",
            ),
            models.Index(fields=["status", "last_seen_at"], name="node_status_last_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.gpu_count}× {self.gpu_model_id})"

    @property
    def is_listed(self) -> bool:
        """LISTED, of this row as it is in memory."""
        return all(_LOOKUPS[lookup](getattr(self, field), value) for field, lookup, value in LISTED_TERMS)

    @property
    def total_vram_gb(self) -> int:
        return self.gpu_count * self.vram_gb


class ProviderGpuPrice(models.Model):
    """A provider-mode list price per GPU-hour for one GPU model (micro-USD)."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.CASCADE, related_name="gpu_prices")
    gpu_model = models.ForeignKey(GpuModel, on_delete=models.PROTECT, related_name="+")
    price_per_hour_micros = models.BigIntegerField()

    class Meta:
        ordering = ["gpu_model__sort_order"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "gpu_model"], name="provider_gpu_price_unique"),
            models.CheckConstraint(condition=Q(price_per_hour_micros__gt=0), name="provider_gpu_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_model_id}: {exact_usd(self.price_per_hour_micros)} USD per GPU-hour"


class NodeToken(models.Model):
    """A registration token for one machine. Only a SHA-256 hash is stored; it is shown once."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.CASCADE, related_name="node_tokens")
    label = models.CharField(max_length=80)
    mode = models.CharField(max_length=10, choices=NodeMode.choices)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    prefix = models.CharField(max_length=12, unique=True)
    token_hash = models.CharField(max_length=64, unique=True)
    node = models.OneToOneField(
        "Node",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="token",
        help_text="Bound at registration",
    )
    machine_id = models.CharField(max_length=64, blank=True, help_text="The machine the token is bound to")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.label} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class OutageKind(models.TextChoices):
    OFFLINE = "offline", "Offline"
    CHALLENGE = "challenge", "Failed or missed challenge"
    MAINTENANCE = "maintenance", "Maintenance (not penalised)"


class NodeOutage(models.Model):
    """A period that counts against uptime (offline, challenge penalty) or is excused (maintenance)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="outages")
    kind = models.CharField(max_length=12, choices=OutageKind.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Empty while it lasts")
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["node", "started_at"], name="outage_node_start")]
        constraints = [
            models.UniqueConstraint(
                fields=["node", "kind"], condition=Q(ended_at__isnull=True), name="outage_one_open_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=F("started_at")), name="outage_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"Node {self.node_id} {self.kind} outage from {self.started_at:%Y-%m-%d %H:%M}"


class ChallengeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    MISSED = "missed", "Missed"


class NodeChallenge(models.Model):
    """A liveness challenge: the agent must show the claimed free resources are really there."""

    public_id = models.CharField(max_length=32, unique=True)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="challenges")
    nonce = models.CharField(max_length=64)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=ChallengeStatus.choices, default=ChallengeStatus.PENDING)
    answered_at = models.DateTimeField(null=True, blank=True)
    expected = models.JSONField(default=dict, help_text="What had to be there: claims less what leases use")
    measured = models.JSONField(default=dict, blank=True)
    failure_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        indexes = [
            models.Index(fields=["node", "issued_at"], name="challenge_node_issued"),
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="challenge_pending_expiry"),
        ]

    def __str__(self) -> str:
        return f"Challenge {self.public_id} to node {self.node_id} ({self.status})"


class EraOutcome(models.TextChoices):
    GOOD = "good", "Good (counts towards promotion)"
    BAD = "bad", "Bad (counts towards demotion)"
    NEUTRAL = "neutral", "Neutral"
    MAINTENANCE = "maintenance", "Maintenance (not counted)"


class NodeEra(models.Model):
    """One 24-hour era of one node: its uptime and what it did to the trust tier."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="eras")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    uptime = models.FloatField()
    outcome = models.CharField(max_length=12, choices=EraOutcome.choices)
    tier_before = models.PositiveSmallIntegerField()
    tier_after = models.PositiveSmallIntegerField()
    good_streak = models.PositiveSmallIntegerField(default=0)
    bad_streak = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["node", "started_at"], name="era_unique_per_node")]

    def __str__(self) -> str:
        return f"Node {self.node_id} era to {self.ended_at:%Y-%m-%d %H:%M}: {self.outcome}"


class AgentState(models.TextChoices):
    """What a node's agent reports of one lease it runs (sdk/PROTOCOL.md): in heartbeats and lease
    events. `assigned` is the server's own state before the agent's first report."""

    ASSIGNED = "assigned", "Assigned"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    EXITED = "exited", "Exited"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


# The agent no longer runs the lease: its last report was one of these.
AGENT_DONE_STATES = (AgentState.STOPPED, AgentState.EXITED, AgentState.FAILED)


class NodeEventKind(models.TextChoices):
    REGISTERED = "registered", "Registered"
    ONLINE = "online", "Came online"
    OFFLINE = "offline", "Went offline"
    STOPPED = "stopped", "Agent stopped cleanly"
    MAINTENANCE_ON = "maintenance_on", "Maintenance on"
    MAINTENANCE_OFF = "maintenance_off", "Maintenance off"
    CHALLENGE = "challenge", "Challenge"
    TIER = "tier", "Trust tier changed"
    FLAGGED = "flagged", "Flagged for review"
    DISABLED = "disabled", "Disabled by an admin"


class NodeEvent(models.Model):
    """The node's timeline: transitions only (heartbeats themselves stay in Redis)."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=NodeEventKind.choices)
    at = models.DateTimeField()
    message = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["node", "at"], name="node_event_node_at")]

    def __str__(self) -> str:
        return f"Node {self.node_id} {self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class StakeEventKind(models.TextChoices):
    STAKE = "stake", "Staked"
    UNSTAKE = "unstake", "Unstaked"
    SLASH = "slash", "Slashed"
    # Pending unstakes paid out by the staking contract: the counted (active) stake does not change.
    WITHDRAW = "withdraw", "Withdrawn"


class StakeSource(models.TextChoices):
    ADMIN = "admin", "recorded by an admin (off-chain agreement)"
    CHAIN = "chain", "on chain"


class StakeEvent(models.Model):
    """History of a provider's $SPON stake (base units, 18 decimals): changes an admin recorded
    (off-chain agreements, `stake_record`) and SponStaking events mirrored from the chain once per
    (chain id, tx hash, log index) by providers.stake_chain."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="stake_events")
    kind = models.CharField(max_length=8, choices=StakeEventKind.choices)
    amount = BaseUnitsField(help_text="Base units, always positive")
    balance_after = BaseUnitsField()
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=5, choices=StakeSource.choices, default=StakeSource.ADMIN)
    # The log a chain row mirrors (empty for admin rows).
    chain_id = models.BigIntegerField(null=True, blank=True)
    tx_hash = models.CharField(max_length=66, blank=True)
    log_index = models.PositiveIntegerField(null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    address = models.CharField(max_length=42, blank=True, help_text="The staking address (chain rows)")
    # An unstake request's unlock time; of a slash, the part taken from pending unstakes (the
    # contract takes active stake first): both let the page replay the pending unstakes.
    unlock_at = models.DateTimeField(null=True, blank=True)
    from_pending = BaseUnitsField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="stake_event_amount_positive"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="stake_event_balance_non_negative"),
            models.UniqueConstraint(
                fields=["chain_id", "tx_hash", "log_index"],
                condition=Q(source="chain"),
                name="stake_event_chain_log_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.amount / 10**SPON_DECIMALS:,} $SPON (provider #{self.provider_id})"


class StakeCursor(models.Model):
    """How far providers.stake_chain has read the staking contract's logs on a chain (final blocks only)."""

    chain_id = models.BigIntegerField(unique=True)
    contract_address = models.CharField(max_length=42)
    last_block = models.BigIntegerField(help_text="Read up to and including this block")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Stake cursor {self.chain_id}: block {self.last_block}"


class StakeBackfill(models.Model):
    """How far providers.stake_chain has back-filled one stake link: the staking contract's earlier
    logs of the link's address (STAKING_START_BLOCK up to the cursor), read once per link so that a
    stake made before linking, or while the address was unlinked, counts. Until `done_at` the forward
    scan leaves the address's events to the back-fill, which keeps them in chain order."""

    link = models.ForeignKey("accounts.WalletLink", on_delete=models.CASCADE, related_name="+")
    chain_id = models.BigIntegerField()
    contract_address = models.CharField(max_length=42)
    address = models.CharField(max_length=42, help_text="The link's address (EIP-55)")
    last_block = models.BigIntegerField(help_text="Read up to and including this block")
    done_at = models.DateTimeField(
        null=True, blank=True, help_text="Caught up with the cursor: the forward scan goes on"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["link", "chain_id", "contract_address"], name="stake_backfill_once_per_link"
            ),
        ]

    def __str__(self) -> str:
        return f"Stake back-fill of {self.address} on {self.chain_id}: block {self.last_block}"


class SlashStatus(models.TextChoices):
    DECIDED = "decided", "Decided (waits for the slasher key)"
    SENDING = "sending", "Sending on chain"
    APPLIED = "applied", "Applied on chain"
    FAILED = "failed", "Failed"
    OFF_CHAIN = "off_chain", "Applied to admin-recorded stake"


class Slash(models.Model):
    """A slash the platform decided (providers.slashing): recorded first, then sent to SponStaking
    by the slasher key and applied once the stake indexer mirrors its Slashed event, or, for a
    provider without a linked stake address, applied at once to the admin-recorded stake.

    `reason_hash` is what the contract receives: keccak256 of the UTF-8 bytes of the compact JSON
    object {"reason": <reason>, "reference": <reference>} (keys sorted, no spaces, non-ASCII kept as
    is), so a provider can recompute it from the two texts the stake page shows."""

    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="slashes")
    amount = BaseUnitsField(help_text="$SPON base units decided (the contract takes at most what is staked)")
    reason = models.CharField(max_length=200)
    reason_hash = models.CharField(max_length=66, help_text="bytes32 hex sent to SponStaking.slash")
    reference = models.CharField(max_length=120, unique=True, help_text='Idempotency key, e.g. "lease-failure:42"')
    evidence_type = models.CharField(max_length=20, blank=True, help_text='"lease", "challenge"…')
    evidence_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=SlashStatus.choices, default=SlashStatus.DECIDED)
    address = models.CharField(max_length=42, blank=True, help_text="The stake address slashed (on chain)")
    chain_tx = models.ForeignKey(
        "chain.ChainTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    stake_event = models.OneToOneField(
        StakeEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="slash_decision"
    )
    amount_slashed = BaseUnitsField(null=True, blank=True, help_text="Base units actually taken (from the event)")
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    node = models.ForeignKey(
        Node,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="slashes",
        help_text="The node whose failure the slash is for (the evidence page links it)",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="slash_amount_positive")]
        indexes = [
            models.Index(fields=["status"], condition=Q(status__in=("decided", "sending")), name="slash_open"),
            models.Index(fields=["provider", "created_at"], name="slash_provider_created"),
        ]

    def __str__(self) -> str:
        return f"Slash {self.reference}: {self.amount / 10**SPON_DECIMALS:,} $SPON ({self.status})"


class AppealStatus(models.TextChoices):
    OPEN = "open", "Open (an admin decides)"
    UPHELD = "upheld", "Upheld"
    DISMISSED = "dismissed", "Dismissed"


class RefundStatus(models.TextChoices):
    NONE = "", "—"
    WAITING = "waiting", "Waits for the treasury key"
    SENDING = "sending", "Sending on chain"
    RETURNED = "returned", "Returned to the stake address"
    FAILED = "failed", "Failed"
    RESTORED = "restored", "Restored to the admin-recorded stake"
    NOTHING = "nothing", "Nothing to return"


class SlashAppeal(models.Model):
    """A provider's appeal of one of their slashes (one per slash), decided by an admin
    (providers.slashing: `appeal_create`, `appeal_decide`). An upheld appeal returns what was slashed:
    on chain a $SPON transfer from the treasury to the stake address slashed (`refund_tx`, reconciled
    by `slashes_run`), off chain a stake event on the admin-recorded stake (`refund_stake_event`)."""

    slash = models.OneToOneField(Slash, on_delete=models.PROTECT, related_name="appeal")
    text = models.TextField(max_length=2000)
    status = models.CharField(max_length=10, choices=AppealStatus.choices, default=AppealStatus.OPEN)
    created_at = models.DateTimeField()
    answer = models.TextField(max_length=2000, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    refund_status = models.CharField(max_length=10, choices=RefundStatus.choices, blank=True, default="")
    refund_amount = BaseUnitsField(null=True, blank=True, help_text="$SPON base units returned")
    refund_tx = models.ForeignKey(
        "chain.ChainTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    refund_stake_event = models.OneToOneField(
        StakeEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="appeal_refund"
    )
    refund_note = models.CharField(max_length=500, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status"], condition=Q(status="open"), name="appeal_open"),
            models.Index(
                fields=["refund_status"],
                condition=Q(refund_status__in=("waiting", "sending")),
                name="appeal_refund_open",
            ),
        ]

    def __str__(self) -> str:
        return f"Appeal of slash {self.slash_id} ({self.status})"


# --- Era rewards (providers.era_rewards) -----------------------------------------------------------


class RewardEra(models.Model):
    """One 24-hour era's rewards across the network, written by providers.era_rewards after the era
    close: the emission shared, the parameters used, the floor's pool and what it paid. Re-running an
    era (the admin) recomputes every NodeReward from the same stored inputs; `runs` counts the runs
    and `changed` how many receipts the last run changed (0 when nothing did)."""

    started_at = models.DateTimeField(unique=True)
    ended_at = models.DateTimeField()
    params = models.JSONField(default=dict, help_text="The reward parameters used (providers.rewards)")
    emission = BaseUnitsField(default=0, help_text="$SPON base units the era shares")
    spon_usd_rate = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, help_text="USD per $SPON used to value rewards"
    )
    nodes = models.PositiveIntegerField(default=0)
    points = models.DecimalField(max_digits=32, decimal_places=6, default=0)
    spon = BaseUnitsField(default=0, help_text="$SPON base units issued (the emission when any node has points)")
    floor_budget_micros = models.BigIntegerField(default=0, help_text="The subsidy pool's era budget, micro-USD")
    floor_wanted_micros = models.BigIntegerField(default=0, help_text="Top-ups the eligible nodes needed")
    floor_paid_micros = models.BigIntegerField(default=0, help_text="Top-ups paid (cut pro rata to the budget)")
    floor_ratio = models.DecimalField(
        max_digits=8, decimal_places=6, default=1, help_text="Share of each top-up paid: 1 unless the pool ran short"
    )
    runs = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0, help_text="Receipts the last run changed")
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"Era {self.started_at:%Y-%m-%d}"

    @property
    def floor_pool_left_micros(self) -> int:
        return self.floor_budget_micros - self.floor_paid_micros


class NodeReward(models.Model):
    """One node's reward for one era: the receipt (every term and its inputs, recomputable with
    spheron_sdk.rewards.reward_recompute), its points and $SPON, its rental income and the floor.

    `address` is the provider's stake address the $SPON went to, set once when the rewards tree first
    includes this row (providers.reward_claims) and never changed, so an address's cumulative amount
    only grows."""

    era = models.ForeignKey(RewardEra, on_delete=models.CASCADE, related_name="node_rewards")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="rewards")
    provider = models.ForeignKey(ProviderProfile, on_delete=models.PROTECT, related_name="rewards")
    receipt = models.JSONField()
    points = models.DecimalField(max_digits=32, decimal_places=6, default=0)
    spon = BaseUnitsField(default=0, help_text="$SPON base units")
    spon_usd_micros = models.BigIntegerField(default=0, help_text="The $SPON valued at the era's rate")
    online_seconds = models.PositiveIntegerField(default=0)
    rental_micros = models.BigIntegerField(default=0, help_text="Rental earnings in the era, net of the fee")
    floor_eligible = models.BooleanField(default=False)
    floor_reason = models.CharField(max_length=200, blank=True, help_text="Why the node has no floor, if not")
    floor_micros = models.BigIntegerField(default=0, help_text="The floor: per online hour × online hours")
    floor_wanted_micros = models.BigIntegerField(default=0, help_text="Floor − income, before any cut")
    floor_topup_micros = models.BigIntegerField(default=0, help_text="Top-up paid to the provider's earnings")
    address = models.CharField(max_length=42, blank=True)

    class Meta:
        ordering = ["-era__started_at", "node_id"]
        constraints = [
            models.UniqueConstraint(fields=["era", "node"], name="node_reward_unique_per_era"),
            models.CheckConstraint(condition=Q(floor_topup_micros__gte=0), name="node_reward_topup_not_negative"),
        ]
        indexes = [
            models.Index(fields=["provider", "era"], name="node_reward_provider_era"),
            models.Index(fields=["node", "era"], name="node_reward_node_era"),
            models.Index(fields=["address"], name="node_reward_address"),
        ]

    def __str__(self) -> str:
        return f"Node {self.node_id} in {self.era}: {self.points} points"


class RewardTreeStatus(models.TextChoices):
    BUILT = "built", "Built (waits for the root-setter key)"
    SENDING = "sending", "Sending setRoot"
    PUBLISHED = "published", "Root set on chain"
    FAILED = "failed", "Failed"


class RewardTree(models.Model):
    """The cumulative rewards tree after an era (OpenZeppelin StandardMerkleTree of (address,
    uint256 cumulative $SPON), spheron_sdk.rewards_tree): published as JSON by the app and its root
    set on RewardDistributor by the root-setter key through chain.sender. A later tree replaces it."""

    era = models.ForeignKey(RewardEra, on_delete=models.PROTECT, related_name="trees")
    root = models.CharField(max_length=66)
    dump = models.JSONField(help_text="The tree as StandardMerkleTree.dump() (standard-v1)")
    total = BaseUnitsField(default=0, help_text="Σ cumulative $SPON base units in the tree")
    status = models.CharField(max_length=10, choices=RewardTreeStatus.choices, default=RewardTreeStatus.BUILT)
    chain_tx = models.ForeignKey(
        "chain.ChainTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["era", "root"], name="reward_tree_unique_root_per_era")]

    def __str__(self) -> str:
        return f"Rewards tree {self.root[:10]}… after {self.era}"
