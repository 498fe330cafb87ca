"""Deployment pages: the list, the new-deployment editor that validates as you type, and the detail
page (a stepper that updates itself, the lease, why this node, the commitment, live logs, the
timeline, close).

Views parse, call one service (marketplace.deployments.services) and render. Self-refreshing parts are
django-template-partials named after the DOM id they replace; polling stops once a deployment has
ended, because the ended state renders without the polling attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST
from spheron_sdk import matching

from billing.selectors import user_balances
from core import clock
from core.errors import ApplicationError
from core.htmx import fragment_requested, vary_on_htmx
from core.money import format_usd
from core.query import query_page
from marketplace.catalog.selectors import offer_get_for_user
from marketplace.deployments.forms import TEMPLATES, SpecForm, node_tier_outside_mode, spec_for_node
from marketplace.deployments.selectors import (
    LOG_BATCH,
    MAX_ID,
    deployment_cost_so_far,
    deployment_costs,
    deployment_lease,
    deployment_log_lines,
    deployment_match_summary,
    leases_by_deployment,
)
from marketplace.deployments.services import (
    deployment_close,
    deployment_create,
    deployment_redeploy,
    estimate,
    get_deployment_for_user,
    node_failover_at,
    spec_from_source,
)
from marketplace.deployments.spec import SpecError
from marketplace.models import (
    ACTIVE_DEPLOYMENT_STATUSES,
    CloseReason,
    Deployment,
    DeploymentEvent,
    DeploymentStatus,
    Lease,
    LeaseLogLine,
    LeaseStatus,
    MatchRecord,
    close_reason_label,
)
from marketplace.store.services import PREFILL_SESSION_KEY
from providers.models import GpuModel, ProviderProfile

LIST_PAGE_SIZE = 20
LOG_TAIL = 500  # lines a page starts with
# Keep polling the logs briefly after the end: the agent flushes its last lines after it stops.
LOG_GRACE = timedelta(seconds=15)
STEPS = (
    (DeploymentStatus.PENDING, "Pending", "looking for a node"),
    (DeploymentStatus.MATCHED, "Matched", "node chosen, price locked"),
    # A soft hyphen: on a phone the word breaks as "Provi-sioning" rather than anywhere.
    (DeploymentStatus.PROVISIONING, "Provi\u00adsioning", "the node starts the workload"),
    (DeploymentStatus.RUNNING, "Running", "the workload runs"),
    (DeploymentStatus.CLOSED, "Closed", "stopped and settled"),
)
STATUS_FILTERS = {"active": ("Active", ACTIVE_DEPLOYMENT_STATUSES), "ended": ("Ended", ("closed", "failed"))}


def _deployment(request: HttpRequest, deployment_id: int) -> Deployment:
    if deployment_id > MAX_ID:
        raise Http404("No such deployment.")
    return get_deployment_for_user(request.user, deployment_id)  # type: ignore[arg-type]


# --- Presentation helpers ----------------------------------------------------------------------


def node_silence(deployment: Deployment, lease: Lease | None) -> dict[str, Any] | None:
    """While the node of the running lease is offline: since when (its last heartbeat), what
    happens next and when. None while it heartbeats."""
    if lease is None or lease.status != LeaseStatus.ACTIVE:
        return None
    failover_at = node_failover_at(lease.node)
    if failover_at is None:
        return None
    pinned = deployment.spec.get("node")
    when = f"{failover_at:%H:%M:%S} UTC"
    if pinned:
        next_step = f"closing at {when} if it does not come back: pinned to this node, it cannot move"
    elif not deployment.failover:
        next_step = f"closing at {when} if it does not come back: failover is off"
    else:
        next_step = f"moving to another node at {when} if it does not come back"
    return {
        "node_id": lease.node_id,
        "since": lease.node.last_seen_at,
        "at": failover_at,
        "pinned": pinned,
        "next": next_step,
        "hint": f"node stopped responding at {lease.node.last_seen_at:%H:%M:%S} UTC; {next_step}",
    }


def stepper(
    deployment: Deployment, events: list[DeploymentEvent], silence: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """pending → matched → provisioning → running → closed (or failed), each step done, current,
    to do, or skipped (a deployment closed before it ran). A failover starts over at pending. While
    the node is silent the current step says so, and what happens next and when."""
    reached: set[str] = set()
    for event in events:
        if event.kind == "failover":
            reached = set()
        elif event.kind in (DeploymentStatus.MATCHED, DeploymentStatus.PROVISIONING, DeploymentStatus.RUNNING):
            reached.add(event.kind)
    keys = [key for key, _label, _hint in STEPS]
    steps = []
    if deployment.is_active:
        current = keys.index(deployment.status)
        for index, (key, label, hint) in enumerate(STEPS):
            state = "done" if index < current else "current" if index == current else "todo"
            step = {"key": key, "label": label, "hint": hint, "state": state}
            if silence and state == "current":
                step.update(hint=silence["hint"], warn="true")
            steps.append(step)
        return steps
    failed = deployment.status == DeploymentStatus.FAILED
    reason = close_reason_label(deployment.close_reason, unknown="")
    for key, label, hint in STEPS:
        if key == DeploymentStatus.PENDING:
            state = "done"
        elif key == DeploymentStatus.CLOSED:
            key, label, state = ("failed", "Failed", "failed") if failed else (key, label, "done")
            hint = reason or hint
        else:
            state = "done" if key in reached else "skipped"
        steps.append({"key": key, "label": label, "hint": hint, "state": state})
    return steps


def _why(deployment: Deployment) -> dict[str, Any] | None:
    """The score table of the latest match: each top candidate's inputs, factor scores and total."""
    summary = deployment_match_summary(deployment)
    if summary is None:
        return None
    record = MatchRecord.objects.get(order_id=summary["order_id"])
    candidates = {int(c["node_id"]): c for c in record.candidates}
    providers = dict(
        ProviderProfile.objects.filter(id__in={c["provider_id"] for c in candidates.values()}).values_list(
            "id", "display_name"
        )
    )
    factors = [{"name": name, "weight": record.weights.get(name, "0")} for name in matching.FACTORS]
    rows = []
    for score in record.scores[:10]:
        candidate = candidates.get(int(score["node_id"]), {})
        rows.append(
            {
                "node_id": score["node_id"],
                "provider": providers.get(candidate.get("provider_id"), "—"),
                "region": candidate.get("region", ""),
                "price_per_hour_micros": candidate.get("price_per_hour_micros"),
                "uptime_30d": float(Decimal(candidate["uptime_30d"])) if "uptime_30d" in candidate else None,
                "trust_tier": candidate.get("trust_tier"),
                "factors": [score["factors"].get(name, "") for name in matching.FACTORS],
                "total": score["total"],
                "winner": int(score["node_id"]) == record.winner_node_id,
            }
        )
    return {**summary, "rows": rows, "factors": factors}


def duration_text(seconds: int | None) -> str:
    """90 -> '1 min 30 s', 3600 -> '1 h', 93600 -> '1 d 2 h'; None -> 'open-ended'."""
    if seconds is None:
        return "open-ended"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2]) or "0 s"


def _gpu_label(deployment: Deployment, names: dict[str, str]) -> str:
    units = deployment.spec.get("gpu_units") or 0
    if not units:
        return "CPU only"
    models = deployment.spec.get("gpu_models") or []
    return f"{units}× {' / '.join(names.get(m, m) for m in models) or 'any GPU'}"


def _list_rows(deployments: list[Deployment]) -> list[dict[str, Any]]:
    names = dict(GpuModel.objects.values_list("slug", "name"))
    ids = [deployment.id for deployment in deployments]
    leases = leases_by_deployment(ids)
    costs = deployment_costs(ids)
    return [
        {
            "deployment": deployment,
            "lease": leases.get(deployment.id),
            "gpu": _gpu_label(deployment, names),
            "cost": costs[deployment.id],
            "silence": node_silence(deployment, leases.get(deployment.id)),
        }
        for deployment in deployments
    ]


# --- List --------------------------------------------------------------------------------------


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    show = request.GET.get("show", "")
    queryset = Deployment.objects.filter(owner=request.user).order_by("-created_at", "-id")
    if show in STATUS_FILTERS:
        queryset = queryset.filter(status__in=STATUS_FILTERS[show][1])
    else:
        show = ""
    paginator = Paginator(queryset, LIST_PAGE_SIZE)
    page = query_page(paginator, request.GET.get("page"))
    rows = _list_rows(list(page.object_list))
    active = {"show": show} if show else {}
    context = {
        "page": page,
        "rows": rows,
        "show": show,
        "active": active,
        "filters": [("", "All")] + [(key, label) for key, (label, _statuses) in STATUS_FILTERS.items()],
        "any_active": any(row["deployment"].is_active for row in rows),
        "has_any": show != "" or paginator.count > 0,
        "refresh_url": f"{request.path}?{urlencode({**active, 'page': page.number})}",
    }
    template = "deployments/list.html"
    if fragment_requested(request, "deployments-table"):
        template += "#deployments-table"
    response = render(request, template, context)
    vary_on_htmx(response)
    return response


# --- New deployment ----------------------------------------------------------------------------


def _spec_check(request: HttpRequest, text: str) -> dict[str, Any]:
    """What the editor shows under the spec: its problems with line numbers, or the estimate and
    whether the balance covers the hold."""
    form = SpecForm({"spec": text})
    if not form.is_valid():
        if not text.strip():
            return {"empty": True}
        return {"errors": [{"field": "spec", "message": " ".join(form.errors["spec"]), "line": None}]}
    try:
        spec = spec_from_source(form.cleaned_data["spec"])
    except SpecError as exc:
        return {"errors": sorted(exc.errors, key=lambda error: (error["line"] or 0, error["field"]))}
    cost = estimate(spec)
    balances = user_balances(user=request.user)  # type: ignore[arg-type]
    names = dict(GpuModel.objects.filter(slug__in=spec.gpu_models).values_list("slug", "name"))
    return {
        "spec": spec,
        "gpu_names": [names.get(slug, slug) for slug in spec.gpu_models],
        "estimate": cost,
        "duration": duration_text(spec.duration_seconds),
        "available": balances.available,
        "debt": balances.debt,
        "short": not balances.can_hold(cost["hold_micros"]),
        "top_up_url": reverse("billing") + "#top-up",
    }


def _initial_spec(request: HttpRequest) -> tuple[str, dict[str, Any]]:
    """The editor's first text: pinned to ?node=<id> (from "Rent"), a ?template=, or the GPU job."""
    info: dict[str, Any] = {}
    raw_node = request.GET.get("node", "").strip()
    if raw_node:
        node = None
        if raw_node.isascii() and raw_node.isdigit() and len(raw_node) <= 19 and 0 < int(raw_node) <= MAX_ID:
            try:
                # An unlisted node is shown (with why it cannot be rented) to its owner and renters only.
                node = offer_get_for_user(node_id=int(raw_node), user=request.user)
            except Http404:
                node = None
        if node is None:
            info["notice"] = (
                f"There is no offer with node id {raw_node}. Start from a template, or pick one in the catalog."
            )
        else:
            info["node"] = node
            if not node.is_listed:
                info["notice"] = (
                    f"Node {node.id} is not available to rent right now ({node.get_status_display().lower()}"
                    f"{', in maintenance' if node.in_maintenance else ''}"
                    f"{', fully rented' if node.available_gpus == 0 else ''}). Submitting will be refused until it is."
                )
            elif node_tier_outside_mode(node):
                info["notice"] = (
                    f"Node {node.id} is in trust tier {node.trust_tier}, outside the tiers its {node.mode} mode "
                    "allows, so no order can match it yet."
                )
            # "Deploy" in the model store (marketplace.store) leaves its spec, pinned to this node, in
            # the session: it may hold secrets, so it never travels in the URL.
            prefill = request.session.get(PREFILL_SESSION_KEY) if request.GET.get("prefill") == "store" else None
            if isinstance(prefill, dict) and prefill.get("node") == node.id and isinstance(prefill.get("spec"), str):
                return prefill["spec"], info
            return spec_for_node(node), info
    key = request.GET.get("template", "gpu")
    info["template"] = key if key in TEMPLATES else "gpu"
    return TEMPLATES[info["template"]][1], info


@login_required
def deployment_new(request: HttpRequest) -> HttpResponse:
    problem: dict[str, Any] | None = None
    info: dict[str, Any] = {}
    if request.method == "POST":
        form = SpecForm(request.POST)
        text = request.POST.get("spec", "")
        check = _spec_check(request, text)
        if form.is_valid() and "errors" not in check:
            try:
                deployment = deployment_create(user=request.user, source=form.cleaned_data["spec"])  # type: ignore[arg-type]
            except SpecError as exc:
                check = {"errors": exc.errors}
            except ApplicationError as exc:
                problem = {"message": exc.message, "top_up_url": exc.extra.get("top_up_url"), "status": exc.status}
            else:
                messages.success(
                    request,
                    f"Deployment #{deployment.id} submitted: holding {estimate_text(check)} while a node is found.",
                )
                return redirect("deployments:detail", deployment_id=deployment.id)
    else:
        text, info = _initial_spec(request)
        form = SpecForm(initial={"spec": text})
        check = _spec_check(request, text)
    context = {
        "form": form,
        "check": check,
        "problem": problem,
        "templates": [(key, label) for key, (label, _text) in TEMPLATES.items()],
        **info,
    }
    return render(request, "deployments/new.html", context, status=402 if problem and problem["status"] == 402 else 200)


def estimate_text(check: dict[str, Any]) -> str:
    cost = check.get("estimate")
    return f"{cost['hold']} for {cost['hold_hours']} h" if cost else "the first hours"


@require_POST
@login_required
def deployment_validate(request: HttpRequest) -> HttpResponse:
    """The editor's live check (htmx, on every pause in typing): the #spec-check fragment."""
    check = _spec_check(request, request.POST.get("spec", ""))
    return render(request, "deployments/new.html#spec-check", {"check": check})


# --- Detail ------------------------------------------------------------------------------------


REDEPLOY_AFTER = (CloseReason.PROVIDER_FAILED, CloseReason.NODE_DISABLED)


def _detail_context(request: HttpRequest, deployment: Deployment) -> dict[str, Any]:
    events = list(deployment.events.order_by("at", "id"))
    lease = deployment_lease(deployment)
    silence = node_silence(deployment, lease)
    pinned = deployment.spec.get("node")
    # An ended lease whose stop the agent has not confirmed yet: keep refreshing until it does (or
    # until the stop timeout gives its capacity back), so the final state shows without a reload.
    awaiting_agent = bool(
        lease
        and lease.status != LeaseStatus.ACTIVE
        and lease.agent_state_shown == "stopping"
        and lease.capacity_released_at is None
    )
    return {
        "deployment": deployment,
        "steps": stepper(deployment, events, silence),
        "events": events,
        "lease": lease,
        "lease_active": bool(lease and lease.status == LeaseStatus.ACTIVE),
        "silence": silence,
        "pinned": pinned,
        "offer_redeploy": bool(
            pinned and (silence or (not deployment.is_active and deployment.close_reason in REDEPLOY_AFTER))
        ),
        "live_polling": deployment.is_active or awaiting_agent,
        "cost": deployment_cost_so_far(deployment),
        "why": _why(deployment),
        "duration": duration_text(deployment.duration_seconds),
        "match_timeout": settings.MATCH_TIMEOUT_SECONDS,
        "proof_url": request.build_absolute_uri(f"/api/v1/deployments/{deployment.id}/match-proof"),
        "api_url": request.build_absolute_uri(f"/api/v1/deployments/{deployment.id}"),
    }


@login_required
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment(request, deployment_id)
    context = _detail_context(request, deployment)
    if fragment_requested(request, "deployment-live"):
        # The stepper, and the lease, why and timeline out of band, so that none disagrees.
        html = render_to_string("deployments/detail.html#deployment-live", context, request=request)
        for part in ("deployment-lease", "deployment-why", "deployment-timeline"):
            html += render_to_string(f"deployments/detail.html#{part}", {**context, "oob": True}, request)
        response = HttpResponse(html)
    else:
        lines = deployment_log_lines(deployment, limit=LOG_TAIL, tail=True)
        context.update(_log_context(deployment, lines, after=0, last_lease=None))
        response = render(request, "deployments/detail.html", context)
    vary_on_htmx(response)
    return response


def _log_context(
    deployment: Deployment, lines: list[LeaseLogLine], *, after: int, last_lease: int | None
) -> dict[str, Any]:
    """Lines to show, with a marker where the output moves to another lease (after a failover)."""
    nodes = dict(Lease.objects.filter(id__in={line.lease_id for line in lines}).values_list("id", "node_id"))
    rows = []
    for line in lines:
        marker = None
        if last_lease is not None and line.lease_id != last_lease:
            marker = f"── lease {line.lease_id} on node {nodes.get(line.lease_id)} ──"
        rows.append({"line": line, "marker": marker})
        last_lease = line.lease_id
    ended_recently = deployment.closed_at is not None and clock.now() - deployment.closed_at < LOG_GRACE
    return {
        "deployment": deployment,
        "log_rows": rows,
        "after": lines[-1].id if lines else after,
        "last_lease": last_lease,
        "keep_polling": deployment.is_active or ended_recently or len(lines) >= LOG_BATCH,
    }


def _plain_lines(lines: Iterator[LeaseLogLine]) -> Iterator[str]:
    for line in lines:
        yield f"{line.at:%Y-%m-%dT%H:%M:%S}Z {line.stream} {line.line}\n"


def _plain_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


@login_required
def deployment_logs(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """htmx: the lines after ?after=<id> appended to the page's <pre>, and the next poller.
    Otherwise: every line as plain text (the "raw log" link)."""
    deployment = _deployment(request, deployment_id)
    if not request.htmx:  # type: ignore[attr-defined]
        lease_ids = list(Lease.objects.filter(deployment=deployment).values_list("id", flat=True))
        lines = LeaseLogLine.objects.filter(lease_id__in=lease_ids).order_by("id").iterator(chunk_size=2000)
        response = StreamingHttpResponse(_plain_lines(lines), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'inline; filename="deployment-{deployment.id}.log"'
        return response
    raw_after, raw_lease = request.GET.get("after", "0"), request.GET.get("lease", "")
    # isascii: '²' passes isdigit() but not int(); the length keeps int() from a 5,000-digit string.
    if not _plain_id(raw_after) or int(raw_after) > MAX_ID or (raw_lease and not _plain_id(raw_lease)):
        return HttpResponseBadRequest("after and lease: must be ids (whole numbers)")
    after = int(raw_after)
    lines = deployment_log_lines(deployment, after=after, limit=LOG_BATCH)
    last_lease = int(raw_lease) if raw_lease else None
    context = {**_log_context(deployment, lines, after=after, last_lease=last_lease), "poll": True}
    return render(request, "deployments/detail.html#log-poll", context)


@require_POST
@login_required
def deployment_redeploy_view(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """A pinned deployment whose node failed: the same spec without the pin, as a new deployment."""
    deployment = _deployment(request, deployment_id)
    try:
        new = deployment_redeploy(user=request.user, deployment=deployment)  # type: ignore[arg-type]
    except ApplicationError as exc:  # a spec the parser now refuses, credits, too many deployments
        messages.error(request, f"Could not re-deploy: {exc.message}")
    else:
        messages.success(
            request,
            f"Deployment #{new.id} submitted: the spec of #{deployment.id} without its pin to node "
            f"{deployment.spec['node']}, for any similar node.",
        )
        return redirect("deployments:detail", deployment_id=new.id)
    return redirect("deployments:detail", deployment_id=deployment.id)


@require_POST
@login_required
def deployment_close_view(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment(request, deployment_id)
    if not deployment.is_active:
        messages.info(request, f"Deployment #{deployment.id} has already ended.")
        return redirect("deployments:detail", deployment_id=deployment.id)
    deployment = deployment_close(deployment=deployment)
    cost = deployment_cost_so_far(deployment)
    messages.success(
        request,
        f"Deployment #{deployment.id} is closed. It cost {format_usd(cost, places=6)}; "
        "the rest of the hold is back in your balance.",
    )
    return redirect("deployments:detail", deployment_id=deployment.id)
