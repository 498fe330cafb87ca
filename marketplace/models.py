from __future__ import annotations

from django.db import models

from providers.models import AGENT_DONE_STATES, LISTED, AgentState, Node


class InlineJSONField(models.JSONField):
    """A JSONField that bulk_create sends as one parameter per row.

    On PostgreSQL Django 5.2 bulk-inserts through UNNEST, one array parameter per column, and
    psycopg escapes each quote of each array element in Python (re.sub with a template): 1.7 ms for
    six 11 KB match proofs. A field with `get_placeholder` keeps the plain VALUES form.
    """

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s"


class OfferQuerySet(models.QuerySet):
    pass


class OfferManager(models.Manager.from_queryset(OfferQuerySet)):  # type: ignore[misc]
    def get_queryset(self) -> OfferQuerySet:
        return super().get_queryset().filter(LISTED)


class Offer(Node):
    """A node as the catalog lists it: online, not in maintenance, with at least one free GPU.

    A proxy, not a copy: an offer is the node's free capacity at the node's price, so there is
    nothing to keep in sync.
    """

    objects = OfferManager()

    class Meta:
        proxy = True
        verbose_name = "offer"


class DemoMarket(models.Model):
    """What `seed_demo` last loaded, so a repeated run with the same arguments is a no-op."""

    seed = models.BigIntegerField()
    nodes = models.PositiveIntegerField()
    generator_version = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "demo market"

    def __str__(self) -> str:
        return f"demo market v{self.generator_version}: seed={self.seed} nodes={self.nodes}"


# --- Deployments (issue 5) ----------------------------------------------------------------------


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending: looking for a node"
    MATCHED = "matched", "Matched: node chosen"
    PROVISIONING = "provisioning", "Provisioning: starting the workload"
    RUNNING = "running", "Running"
    CLOSED = "closed", "Closed"
    FAILED = "failed", "Failed"


ACTIVE_DEPLOYMENT_STATUSES = (
    DeploymentStatus.PENDING,
    DeploymentStatus.MATCHED,
    DeploymentStatus.PROVISIONING,
    DeploymentStatus.RUNNING,
)


class CloseReason(models.TextChoices):
    USER_CLOSED = "user_closed", "Closed by the renter"
    INSUFFICIENT_FUNDS = "insufficient_funds", "Insufficient funds"
    EXPIRED = "expired", "Duration over"
    NO_MATCH = "no_match", "No node matched in time"
    PROVIDER_FAILED = "provider_failed", "The node failed"
    EXITED = "exited", "The workload exited"
    WORKLOAD_FAILED = "workload_failed", "The workload failed to start"
    ADMIN_CLOSED = "admin_closed", "Closed by an administrator"
    NODE_DISABLED = "node_disabled", "The node was taken off the market"


def close_reason_label(reason: str, unknown: str | None = None) -> str:
    """The words for a close reason: 'expired' -> 'Duration over'. A code CloseReason does not
    know gives `unknown`, or the code itself when `unknown` is None."""
    if reason in CloseReason.values:
        return CloseReason(reason).label
    return reason if unknown is None else unknown


class Deployment(models.Model):
    """A renter's request for compute, from submission to close; leases are its placements."""

    owner = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="deployments")
    name = models.CharField(max_length=120)
    spec_source = models.TextField(help_text="As submitted (YAML or JSON)")
    spec = models.JSONField(help_text="Normalised spec (marketplace.spec)")
    spec_hash = models.CharField(max_length=64)
    mode = models.CharField(max_length=10)
    failover = models.BooleanField(default=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: until closed")
    max_price_per_hour_micros = models.BigIntegerField()
    status = models.CharField(max_length=12, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    hold = models.ForeignKey(
        "billing.Hold", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="Funds held while no lease runs",
    )  # fmt: skip
    close_reason = models.CharField(max_length=20, choices=CloseReason.choices, blank=True)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="First lease running")
    ends_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="deployment_owner_created"),
            models.Index(fields=["status", "ends_at"], name="deployment_status_ends"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_DEPLOYMENT_STATUSES


class OrderStatus(models.TextChoices):
    OPEN = "open", "Open"
    MATCHING = "matching", "Being matched"
    MATCHED = "matched", "Matched"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    """One attempt to place a deployment: the first, and one more after each failover."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="orders")
    attempt = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.OPEN)
    excluded_node_ids = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField()
    deadline_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker last took it to match")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="Waiting for capacity: not tried again before this (MATCH_RETRY_SECONDS)"
    )
    matched_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], condition=models.Q(status="open"), name="order_open")]
        constraints = [models.UniqueConstraint(fields=["deployment", "attempt"], name="order_unique_attempt")]

    def __str__(self) -> str:
        return f"order #{self.pk} (deployment #{self.deployment_id}, attempt {self.attempt})"


class MatchRecord(models.Model):
    """Why the matchmaker chose a node: every scored candidate, the weights, the seed, the commitment."""

    order = models.OneToOneField(Order, on_delete=models.CASCADE, related_name="match")
    seed = models.CharField(max_length=64)
    weights = InlineJSONField()
    candidates = InlineJSONField(help_text="Raw inputs of each scored candidate, in SQL order")
    scores = InlineJSONField(help_text="Each candidate's factor scores and total, best first")
    winner_node_id = models.BigIntegerField()
    commitment = models.CharField(max_length=64, help_text="SHA-256 of the canonical match document")
    candidate_count = models.PositiveIntegerField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"match of order #{self.order_id}"


class LeaseStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    CLOSED = "closed", "Closed"


class Lease(models.Model):
    """A deployment placed on a node at a locked price, with the capacity it reserved."""

    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="leases")
    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="lease")
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="leases")
    price_per_hour_micros = models.BigIntegerField()
    gpus = models.PositiveSmallIntegerField()
    cpu_cores = models.PositiveIntegerField()
    memory_gb = models.PositiveIntegerField()
    storage_gb = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=LeaseStatus.choices, default=LeaseStatus.ACTIVE)
    agent_state = models.CharField(
        max_length=14,
        choices=AgentState.choices,
        default=AgentState.ASSIGNED,
        help_text="Last state the agent reported",
    )
    exit_code = models.IntegerField(null=True, blank=True)
    meter = models.OneToOneField(
        "billing.UsageMeter", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=20, choices=CloseReason.choices, blank=True)
    capacity_released_at = models.DateTimeField(
        null=True, blank=True,
        help_text="When the node's capacity came back: the agent stopped the workload, or the stop timed out",
    )  # fmt: skip
    # The match commitment on LeaseRegistry (marketplace.deployments.commitments): the batch transaction
    # that carries it (set with the transaction's row, cleared if the batch fails), then when it is on chain.
    commitment_tx = models.ForeignKey(
        "chain.ChainTransaction", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    committed_at = models.DateTimeField(null=True, blank=True, help_text="When the commitment was seen on chain")
    commitment_tx_hash = models.CharField(max_length=66, blank=True, help_text="Empty: recorded by another transaction")
    commitment_block = models.BigIntegerField(null=True, blank=True)
    commitment_problem = models.CharField(
        max_length=200, blank=True, help_text="The chain holds another commitment for this lease: not published again"
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(commitment_tx__isnull=True, committed_at__isnull=True),
                name="lease_commitment_pending",
            ),
            models.Index(fields=["node"], condition=models.Q(status="active"), name="lease_active_node"),
            # Leases holding capacity on their node: active, or ended and not yet stopped there.
            models.Index(
                fields=["node"], condition=models.Q(capacity_released_at__isnull=True), name="lease_holding_node"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment"], condition=models.Q(status="active"), name="lease_one_active_per_deployment"
            )
        ]

    def __str__(self) -> str:
        return f"lease #{self.pk} on node {self.node_id}"

    AGENT_DONE = AGENT_DONE_STATES

    @property
    def agent_state_shown(self) -> str:
        """What the page says of the agent: its last report, except that a lease that ended while
        the agent still reported it running is "stopping" (the stop is sent with its next
        heartbeat), or "lost" when the node itself failed."""
        if self.status == LeaseStatus.ACTIVE or self.agent_state in self.AGENT_DONE:
            return self.agent_state
        return "lost" if self.close_reason == CloseReason.PROVIDER_FAILED else "stopping"


class DeploymentEvent(models.Model):
    """The deployment's timeline."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, null=True, blank=True, related_name="events")
    kind = models.CharField(max_length=20)
    at = models.DateTimeField()
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["deployment", "at"], name="deployment_event_at")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S} UTC"


class LeaseLogLine(models.Model):
    lease = models.ForeignKey(Lease, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField()
    stream = models.CharField(max_length=6, default="stdout")
    line = models.TextField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["lease", "id"], name="lease_log_lease_id")]

    def __str__(self) -> str:
        return f"Lease {self.lease_id} {self.stream} at {self.at:%H:%M:%S}: {self.line[:60]}"


# --- Model store (issue 23 part 4): ready deployments, rendered by marketplace.store -------------


class TemplateCategory(models.TextChoices):
    LLM = "llm", "Language models"
    IMAGE = "image", "Image generation"
    NOTEBOOK = "notebook", "Notebooks"
    BASE = "base", "Base systems"


class TemplateMode(models.TextChoices):
    ANY = "any", "Either mode (the cheapest offer decides)"
    FIZZ = "fizz", "Fizz (community nodes)"
    PROVIDER = "provider", "Provider (datacenters)"


class Template(models.Model):
    """A ready deployment of the model store: a spec with placeholders that marketplace.store
    fills in (the user's environment values, an optional Hugging Face model, the GPU request,
    the price, the node it is pinned to)."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=12, choices=TemplateCategory.choices)
    mode = models.CharField(max_length=10, choices=TemplateMode.choices, default=TemplateMode.ANY)
    gpu_units = models.PositiveSmallIntegerField(default=1, help_text="GPUs asked for; 0: runs on CPU-only nodes too")
    min_vram_gb = models.PositiveIntegerField(default=0, help_text="Memory per GPU the workload needs, GB")
    gpu_models = models.JSONField(
        default=list, blank=True, help_text='GPU model slugs it runs on, e.g. ["rtx4090", "h100"]; empty: any GPU'
    )
    ports = models.JSONField(
        default=list, blank=True, help_text='[{"port": 8000, "as": 8000, "label": "OpenAI-compatible API"}]'
    )
    env_vars = models.JSONField(
        default=list,
        blank=True,
        help_text='What the user fills in: [{"name": "HF_TOKEN", "label": "…", "required": false, "secret": true, '
        '"default": ""}]',
    )
    hf_model_default = models.CharField(
        max_length=200, blank=True, help_text="Hugging Face model id it serves by default; empty: takes no model id"
    )
    max_price_per_hour = models.DecimalField(
        max_digits=9, decimal_places=2, help_text="The spec's max price (USD/h) until an offer is chosen"
    )
    spec_template = models.TextField(
        help_text="The spec (ICL v2 YAML). Placeholders, each a whole YAML value: {{ GPU }}, {{ PORTS }}, {{ ENV }}, "
        "{{ MODE }}, {{ TIERS }}, {{ MAX_PRICE }}, {{ HF_MODEL }} and {{ NAME }} for each variable."
    )
    active = models.BooleanField(default=True, help_text="Listed in the model store")
    order = models.PositiveSmallIntegerField(default=0, help_text="Lower first")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "name", "id"]
        verbose_name = "model store template"

    def __str__(self) -> str:
        return self.name
