"""Billing pages: balance and top-up, transactions (with CSV), spend chart, statements, earnings."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode

from accounts.models import WalletPurpose
from accounts.wallets import wallet_current
from billing import deposit_pages, stripe_service
from billing import deposits as billing_deposits
from billing.forms import PayoutForm, TopUpForm
from billing.models import TransactionKind
from billing.payouts import (
    approval_threshold_micros,
    earnings_transactions,
    minimum_micros,
    payout_chains,
    payout_request_create,
    payout_rows,
    provider_earnings,
)
from billing.references import describe_transactions, describe_transactions_iter, with_references
from billing.runway import user_runway
from billing.selectors import user_balances
from billing.statements import (
    KIND_LABELS,
    TransactionFilter,
    signed_usd,
    spend_chart,
    spend_per_day,
    statement_get,
    statement_months,
    topup_get_for_user,
    transaction_list,
    transaction_rows_for_export,
)
from billing.stripe_service import NOT_CONFIGURED, card_payments_configured
from chain.devnet import demo_pay
from chain.models import Chain
from chain.services import deposit_check, reference_for
from core.errors import ApplicationError
from core.htmx import fragment_requested, push_filters_url, vary_on_htmx
from core.money import exact_usd, format_usd
from core.query import parse_query_filters, query_page

logger = logging.getLogger(__name__)

TRANSACTIONS_PAGE_SIZE = 50


def _display(row: dict) -> dict:
    """A transaction row with its amounts and type written for people."""
    return {
        **row,
        "kind_label": KIND_LABELS.get(row["kind"], row["kind"]),
        "available_display": signed_usd(row["available"]) if row["available"] else "",
        "reserved_display": signed_usd(row["reserved"]) if row["reserved"] else "",
        "owed_display": signed_usd(row["owed"]) if row["owed"] else "",
    }


# --- Overview and top-up -------------------------------------------------------------------
def _overview(request: HttpRequest, *, topup_form: TopUpForm | None = None) -> HttpResponse:
    user = request.user
    balances = user_balances(user=user)  # type: ignore[arg-type]
    spend = spend_per_day(user=user)  # type: ignore[arg-type]
    context = {
        "balances": balances,
        "runway": user_runway(user=user),  # type: ignore[arg-type]
        "card_payments": card_payments_configured(),
        "topup_form": topup_form or TopUpForm(),
        "chart": spend_chart(spend),
        "recent": [_display(row) for row in describe_transactions(list(transaction_list(user=user)[:10]), user=user)],  # type: ignore[arg-type]
        "months": statement_months(user=user)[:6],  # type: ignore[arg-type]
    }
    return render(request, "billing/overview.html", context)


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    return _overview(request)


@login_required
def topup(request: HttpRequest) -> HttpResponse:
    """GET: the top-up page (card, and crypto per enabled chain). POST an amount: create the
    PaymentIntent and show Stripe's card form (the pay step)."""
    if request.method != "POST":
        return _topup_page(request)
    form = TopUpForm(request.POST)
    if not card_payments_configured():
        messages.error(request, NOT_CONFIGURED)
        return redirect("billing")
    if form.is_valid():
        try:
            intent = stripe_service.topup_create(user=request.user, amount_micros=form.cleaned_data["amount"])
        except ApplicationError as exc:
            if exc.status == 503:
                messages.error(request, exc.message)
                return redirect("billing")
            form.add_error("amount" if exc.extra.get("field") == "amount" else None, exc.message)
        else:
            # The client secret goes to this page only; it is not stored in the session or a URL,
            # so this is not a redirect. Reloading starts a new, harmless PaymentIntent.
            response = render(
                request,
                "billing/topup_pay.html",
                {
                    "topup": intent.topup,
                    "client_secret": intent.client_secret,
                    "publishable_key": intent.publishable_key,
                    "return_url": request.build_absolute_uri(reverse("billing_topup_status", args=[intent.topup.id])),
                    "stripe_js_url": settings.STRIPE_JS_URL,
                },
            )
            response["Cache-Control"] = "no-store"
            return response
    return _overview(request, topup_form=form)


@login_required
def topup_status(request: HttpRequest, topup_id: int) -> HttpResponse:
    """Where Stripe sends the card holder back; credits appear once the webhook confirms."""
    topup = topup_get_for_user(user=request.user, topup_id=topup_id)
    template = "billing/topup_status.html"
    if fragment_requested(request, "topup-status"):
        template += "#topup-status"
    response = render(request, template, {"topup": topup, "balances": user_balances(user=request.user)})
    return vary_on_htmx(response)


# --- Crypto top-ups ------------------------------------------------------------------------
@dataclass
class _Check:
    """The "check this transaction" form's input and outcome."""

    chain: str = ""
    tx_hash: str = ""
    error: str = ""
    rows: list = field(default_factory=list)
    yours: list = field(default_factory=list)


def _field(value: object, max_length: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    return "" if "\x00" in text else text[:max_length]


def _prefilled_amount(request: HttpRequest, crypto: deposit_pages.CryptoTopup) -> None:
    """?chain=&token=&usd= (the calculator without JavaScript): that option's amount, on the page."""
    chain_key, symbol, usd = (request.GET.get(name) for name in ("chain", "token", "usd"))
    if not (chain_key and symbol and usd):
        return
    for section in crypto.reachable:
        for option in section.options:
            if option.chain.key == chain_key and option.token.symbol == symbol:
                option.usd_text = usd[:20]
                try:
                    usd_micros = deposit_pages.parse_usd(usd)
                except ApplicationError as exc:
                    option.amount = deposit_pages.Amount(usd_micros=0, error=exc.message)
                else:
                    option.amount = deposit_pages.amount_for(option, usd_micros=usd_micros, ref=crypto.reference)


def _deposits_context(request: HttpRequest, *, oob: bool = False) -> dict:
    rows = deposit_pages.deposit_rows(user=request.user)  # type: ignore[arg-type]
    return {"deposits": rows, "deposits_pending": any(row.pending for row in rows), "oob": oob}


def _amount_param(request: HttpRequest) -> str:
    """?amount= when it looks like a dollar amount ("25", "25.50"), else "" (never echoed as is)."""
    raw = request.GET.get("amount", "").strip()
    return raw if re.fullmatch(r"\d{1,6}(\.\d{1,2})?", raw) else ""


def _topup_page(request: HttpRequest, *, check: _Check | None = None, status: int = 200) -> HttpResponse:
    if fragment_requested(request, "crypto-deposits"):  # the list refreshing itself while a deposit confirms
        return vary_on_htmx(render(request, "billing/topup.html#crypto-deposits", _deposits_context(request)))
    crypto = deposit_pages.crypto_topup(user=request.user)  # type: ignore[arg-type]
    _prefilled_amount(request, crypto)
    context = {
        "card_payments": card_payments_configured(),
        # ?amount=25.00 (`sphnctl topup card --amount 25`) fills in the card form; the POST validates it.
        "topup_form": TopUpForm(initial={"amount": _amount_param(request)}),
        "crypto": crypto,
        "check": check or _Check(),
        "check_chains": deposit_pages.check_chains(),
        **_deposits_context(request),
    }
    response = render(request, "billing/topup.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return vary_on_htmx(response)


@login_required
def crypto_amount(request: HttpRequest) -> HttpResponse:
    """The calculator: GET ?chain=&token=&usd= -> the amount to send, its QR code and the wallet
    button, as the fragment `amount-<chain>-<token>` (htmx), or the page with it filled in."""
    if not request.htmx:  # type: ignore[attr-defined]
        query = urlencode({name: request.GET.get(name, "")[:20] for name in ("chain", "token", "usd")})
        anchor = re.sub(
            r"[^a-z0-9-]", "", f"pay-{request.GET.get('chain', '')[:20]}-{request.GET.get('token', '')[:10]}".lower()
        )
        return redirect(f"{reverse('billing_topup')}?{query}#{anchor}")
    try:
        option = deposit_pages.token_option(chain_key=request.GET.get("chain"), symbol=request.GET.get("token"))
    except ApplicationError as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain; charset=utf-8")
    option.usd_text = request.GET.get("usd", "")[:20]
    if option.usd_text.strip():
        try:
            usd_micros = deposit_pages.parse_usd(option.usd_text)
        except ApplicationError as exc:
            option.amount = deposit_pages.Amount(usd_micros=0, error=exc.message)
        else:
            ref = reference_for(request.user).ref  # type: ignore[arg-type]
            option.amount = deposit_pages.amount_for(option, usd_micros=usd_micros, ref=ref)
    return render(request, "billing/_crypto_amount.html", {"option": option})


@login_required
def crypto_check(request: HttpRequest) -> HttpResponse:
    """POST chain + tx_hash: read the transaction from the chain now (chain.services.deposit_check);
    the result, or why not (a 4xx with the reason), in the form's place."""
    if request.method != "POST":
        return redirect(reverse("billing_topup") + "#crypto-check")
    return _crypto_check_response(
        request, _Check(chain=_field(request.POST.get("chain"), 20), tx_hash=_field(request.POST.get("tx_hash"), 100))
    )


def _crypto_check_response(request: HttpRequest, check: _Check) -> HttpResponse:
    status = 200
    if not check.chain or not check.tx_hash:
        check.error, status = "Choose the chain and paste the transaction hash.", 422
    else:
        try:
            found = deposit_check(chain_key=check.chain, tx_hash=check.tx_hash)
        except ApplicationError as exc:
            check.error, status = exc.message, exc.status
        else:
            billing_deposits.deposits_credit_final()  # the hook already credited what turned final; cheap
            for row in deposit_pages.deposit_rows_for(ids=[deposit.id for deposit in found]):
                check.rows.append(row)
                check.yours.append(row.deposit.user_id == request.user.id)
    if not request.htmx:  # type: ignore[attr-defined]
        return _topup_page(request, check=check, status=status)
    context = {"check": check, "check_chains": deposit_pages.check_chains()}
    body = render_to_string("billing/topup.html#crypto-check", context, request=request)
    # The deposits list comes along out of band: a deposit just found starts confirming there.
    body += render_to_string(
        "billing/topup.html#crypto-deposits", _deposits_context(request, oob=True), request=request
    )
    return HttpResponse(body, status=status)


@login_required
def crypto_devnet_pay(request: HttpRequest) -> HttpResponse:
    """Local devnet only (DEBUG and CHAIN_DEVNET, else 404): the server pays `base_units` of the
    chain's native coin with the user's reference from the devnet's public test wallet
    (chain.devnet.demo_pay), then checks the transaction as a pasted one. A demo without a wallet."""
    if not (settings.DEBUG and settings.CHAIN_DEVNET):
        raise Http404("Not on a devnet.")
    if request.method != "POST":
        return redirect(reverse("billing_topup") + "#crypto")
    chain_key = _field(request.POST.get("chain"), 20)
    text = _field(request.POST.get("base_units"), 90)
    check = _Check(chain=chain_key, tx_hash="")
    status = 200
    chain = Chain.objects.filter(key=chain_key, enabled=True).first()
    if chain is None or not text.isdigit() or not 0 < int(text) < 10**30:
        check.error, status = "Choose a chain on the devnet and an amount to send.", 422
    else:
        amount = Decimal(int(text)) / Decimal(10**chain.native_decimals)
        try:
            check.tx_hash = demo_pay(
                chain_key=chain.key, amount=amount, reference=reference_for(request.user).ref, wait_seconds=15
            )
        except Exception as exc:  # the devnet is down or refused: say so, never a 500
            logger.warning("devnet pay on %s failed: %s", chain.key, exc)
            check.error, status = f"The {chain.name} devnet did not take the payment: {exc}", 503
    if not check.error:
        return _crypto_check_response(request, check)
    if not request.htmx:  # type: ignore[attr-defined]
        return _topup_page(request, check=check, status=status)
    context = {"check": check, "check_chains": deposit_pages.check_chains()}
    return HttpResponse(render_to_string("billing/topup.html#crypto-check", context, request=request), status=status)


# --- Transactions --------------------------------------------------------------------------
@login_required
def transactions(request: HttpRequest) -> HttpResponse:
    if request.GET.get("format") == "csv":
        return transactions_csv(request)
    filters, errors = parse_query_filters(TransactionFilter, request.GET)
    paginator = Paginator(transaction_list(user=request.user, filters=filters), TRANSACTIONS_PAGE_SIZE)
    page = query_page(paginator, request.GET.get("page"), errors)
    page.object_list = [_display(row) for row in describe_transactions(list(page.object_list), user=request.user)]
    active = filters.active()
    context = {
        "filters": filters,
        "active": active,
        "errors": errors,
        "page": page,
        "kinds": TransactionKind.choices,
        "csv_query": urlencode(active),
    }
    template = "billing/transactions.html"
    if fragment_requested(request, "transactions-results"):
        template += "#transactions-results"
    response = vary_on_htmx(render(request, template, context))
    push_filters_url(request, response, active, page.number)
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_text(value: str) -> str:
    # A spreadsheet runs a cell starting with = + - @ as a formula; memos can be typed by staff.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv_lines(rows: Iterator[dict]) -> Iterator[str]:
    """`rows` described (`describe_transactions_iter`): the description is what the pages say."""
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            "id",
            "date_utc",
            "type",
            "type_label",
            "description",
            "reference",
            "available_change_usd",
            "reserved_change_usd",
            "debt_change_usd",
        ]
    )
    for row in rows:
        yield writer.writerow(
            [
                row["id"],
                row["created_at"].astimezone(UTC).isoformat(timespec="seconds"),
                row["kind"],
                KIND_LABELS.get(row["kind"], row["kind"]),
                _csv_text(row["description"]),
                _csv_text(f"{row['reference_type']}:{row['reference_id']}"),
                exact_usd(row["available"]),
                exact_usd(row["reserved"]),
                exact_usd(row["owed"]),
            ]
        )


@login_required
def transactions_csv(request: HttpRequest) -> HttpResponse:
    filters, errors = parse_query_filters(TransactionFilter, request.GET)
    if errors:
        # Exporting something other than what was asked for would be worse than no file.
        problems = "; ".join(f"{field}: {message}" for field, message in errors.items())
        return HttpResponse(f"Invalid filters. {problems}\n", status=400, content_type="text/plain; charset=utf-8")
    name = "-".join(
        ["spheron-transactions"]
        + ([filters.kind.value] if filters.kind else [])
        + ([f"from-{filters.date_from}"] if filters.date_from else [])
        + ([f"to-{filters.date_to}"] if filters.date_to else [])
    )
    rows = transaction_rows_for_export(user=request.user, filters=filters)
    response = StreamingHttpResponse(
        _csv_lines(describe_transactions_iter(rows, user=request.user)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


# --- Statements ----------------------------------------------------------------------------
@login_required
def statements(request: HttpRequest) -> HttpResponse:
    return render(request, "billing/statements.html", {"months": statement_months(user=request.user)})


@login_required
def statement_detail(request: HttpRequest, period: tuple[int, int]) -> HttpResponse:
    year, month = period
    statement = statement_get(user=request.user, year=year, month=month)
    return render(request, "billing/statement.html", {"statement": statement})


# --- Provider earnings ---------------------------------------------------------------------
@login_required
def earnings(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_provider:
        messages.info(request, "Earnings are for providers. Turn on the provider role to offer your machines.")
        return redirect("account_settings")
    chains = payout_chains()
    if request.method == "POST":
        form = PayoutForm(request.POST, chains=chains)
        if form.is_valid():
            try:
                payout = payout_request_create(
                    user=user,
                    amount=form.cleaned_data["amount"],
                    chain=form.cleaned_data["chain"],
                    token=form.cleaned_data["token"],
                )
            except ApplicationError as exc:
                field = exc.extra.get("field")
                form.add_error(field if field in form.fields else None, exc.message)
            else:
                when = (
                    f"It waits for an admin's approval (payouts above "
                    f"{format_usd(approval_threshold_micros())} are checked first), then is paid on chain."
                    if payout.needs_approval
                    else "It is paid on chain within a minute or two."
                )
                messages.success(
                    request,
                    f"Payout of {format_usd(payout.amount, places=6)} in {payout.token_symbol} on "
                    f"{payout.chain.name} to {payout.destination} requested. {when}",
                )
                return redirect("billing_earnings")
    else:
        form = PayoutForm(chains=chains)
    paginator = Paginator(earnings_transactions(user=user), TRANSACTIONS_PAGE_SIZE)
    page = query_page(paginator, request.GET.get("page"), past_end="first")
    page.object_list = [
        {
            **row,
            "kind_label": KIND_LABELS.get(row["kind"], row["kind"]),
            "pending_display": signed_usd(row["pending"]) if row["pending"] else "",
            "settled_display": signed_usd(row["settled"]) if row["settled"] else "",
        }
        for row in with_references(list(page.object_list), user=user)
    ]
    context = {
        "earnings": provider_earnings(user=user),
        "form": form,
        "page": page,
        "payouts": payout_rows(user=user),
        "payout_wallet": wallet_current(user=user)[WalletPurpose.PAYOUT],
        "payout_chains": chains,
        "payout_minimum": minimum_micros(),
        "approval_threshold": approval_threshold_micros(),
        "hold_hours": settings.EARNINGS_HOLD_HOURS,
    }
    return render(request, "billing/earnings.html", context)
