from __future__ import annotations

import re
from decimal import Decimal

from django import forms

from core.errors import ApplicationError
from core.money import usd_to_micros

# Dollars and at most two decimal places; bounded so nobody can post a thousand-digit number.
# ASCII digits: `\d` also matches Arabic-Indic and full-width digits, which Decimal() reads as dollars.
USD_AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$", re.ASCII)


def parse_usd_amount(value: object, *, field: str = "amount") -> int:
    """'25', '25.5' or '25.00' (a string, at most 2 decimal places) -> micro-USD. Strict: no
    floats, no exponents, no signs, no thousands separators."""
    if not isinstance(value, str):
        raise ApplicationError('Write the amount as a string of dollars, e.g. "25.00".', {"field": field})
    text = value.strip()
    if "\x00" in text or not USD_AMOUNT.match(text):
        raise ApplicationError(
            "Enter an amount in dollars with at most two decimal places, e.g. 25.00.", {"field": field}
        )
    micros = usd_to_micros(Decimal(text))
    if micros <= 0:
        raise ApplicationError("Enter an amount above zero.", {"field": field})
    return micros


class UsdAmountField(forms.CharField):
    """A dollar amount with at most two decimal places, cleaned to integer micro-USD."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_length", 20)
        super().__init__(**kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off"})

    def clean(self, value: object) -> int:  # type: ignore[override]
        text = super().clean(value)
        try:
            return parse_usd_amount(text)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message) from exc


class TopUpForm(forms.Form):
    amount = UsdAmountField(label="Amount (USD)", help_text="From $5 to $10,000 at a time.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["amount"].widget.attrs["placeholder"] = "25.00"


class PayoutForm(forms.Form):
    """Amount, chain and token of a payout; the address is the user's linked payout wallet. The
    choices are the enabled EVM chains; the service checks the pair (a chain without $SPON…)."""

    amount = UsdAmountField(label="Amount (USD)")
    chain = forms.ChoiceField(
        label="Paid on",
        error_messages={"invalid_choice": "Choose one of the chains listed: payouts are paid on enabled EVM chains."},
    )
    token = forms.ChoiceField(
        label="Paid in",
        error_messages={"invalid_choice": "Choose the chain's native coin or $SPON."},
    )

    def __init__(self, *args, chains: list | tuple = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["amount"].widget.attrs["placeholder"] = "25.00"
        self.fields["chain"].choices = [(chain.key, f"{chain.name} ({chain.native_symbol})") for chain in chains]
        with_spon = [chain.name for chain in chains if chain.spon_token_address]
        token_choices = [("native", "The chain's native coin")]
        if with_spon:
            token_choices.append(("SPON", f"$SPON (on {', '.join(with_spon)})"))
        self.fields["token"].choices = token_choices


class BalanceAlertForm(forms.Form):
    """Low-balance alerts: thresholds in dollars ("25, 10"), e-mail on/off, a webhook URL."""

    thresholds = forms.CharField(
        label="Alert when available credits fall below (USD)",
        max_length=100,
        required=False,
        help_text="Up to 5 amounts, separated by commas, e.g. 25, 10. Empty: no alerts.",
    )
    email_enabled = forms.BooleanField(label="E-mail me", required=False)
    webhook_url = forms.CharField(
        label="Webhook URL",
        max_length=500,
        required=False,
        help_text="We POST a signed JSON event to it (https).",
    )
    new_secret = forms.BooleanField(label="Generate a new signing secret", required=False)

    def clean_thresholds(self) -> list[int]:
        text = self.cleaned_data.get("thresholds") or ""
        values = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            try:
                values.append(parse_usd_amount(part.lstrip("$"), field="thresholds"))
            except ApplicationError as exc:
                raise forms.ValidationError(f"{part!r}: {exc.message}") from exc
        return values


class AutoReloadForm(forms.Form):
    enabled = forms.BooleanField(label="Reload automatically", required=False)
    threshold = UsdAmountField(label="When available credits fall below (USD)")
    amount = UsdAmountField(label="Add (USD)", help_text="At least $20; charged to your saved card.")
