"""Provider dashboard forms. They only parse input; the services check it and raise
ApplicationError(extra={"field": ...}), which the views attach to the field of the same name."""

from __future__ import annotations

from typing import Any

from django import forms

from core.errors import ApplicationError
from core.money import micros_to_usd
from providers.models import Continent, GpuModel, NodeMode, ProviderProfile
from providers.selectors import region_list

MODE_HELP = {
    NodeMode.FIZZ: "A personal machine with one GPU (or none), at the fixed Fizz prices; trust tiers 4–7.",
    NodeMode.PROVIDER: "Datacenter machines, multi-GPU, at your own list prices; secure trust tiers 1–3.",
}


def region_choices(*, blank: str | None = None) -> list[tuple[Any, Any]]:
    """Regions grouped by continent for a <select> with <optgroup>s."""
    names = dict(Continent.choices)
    groups: dict[str, list[tuple[str, str]]] = {}
    for region in region_list():
        groups.setdefault(names.get(region.continent, region.continent), []).append(
            (region.code, f"{region.name} ({region.code})")
        )
    choices: list[tuple[Any, Any]] = [("", blank)] if blank is not None else []
    return choices + list(groups.items())


def micros_to_input(micros: int | None) -> str:
    """1_750_000 -> '1.75' for a price input."""
    if micros is None:
        return ""
    value = micros_to_usd(micros).normalize()
    return f"{value:f}"


def attach_error(form: forms.Form, exc: ApplicationError) -> None:
    """The one mapping of a service error onto a form: next to its field, else above the form."""
    field = exc.extra.get("field")
    form.add_error(field if field in form.fields else None, exc.message)


class ProviderProfileForm(forms.Form):
    display_name = forms.CharField(
        label="Display name",
        required=False,  # the service says what is missing, in its own words
        max_length=200,
        help_text="Shown to renters next to your machines.",
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    payout_evm_address = forms.CharField(
        label="Payout EVM address",
        required=False,
        max_length=200,
        help_text="0x… on zkSync Era, Arbitrum, Optimism, BNB Chain or Avalanche. Mixed case is checked (EIP-55).",
        widget=forms.TextInput(
            attrs={"placeholder": "0x…", "spellcheck": "false", "autocomplete": "off", "class": "address-input"}
        ),
    )
    payout_solana_address = forms.CharField(
        label="Payout Solana address",
        required=False,
        max_length=200,
        help_text="Base58, 32–44 characters. Give at least one of the two addresses.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off", "class": "address-input"}),
    )
    default_region = forms.ChoiceField(label="Region of your machines", required=False)
    default_mode = forms.ChoiceField(
        label="Mode",
        choices=NodeMode.choices,
        initial=NodeMode.FIZZ,
        required=False,
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_region"].choices = region_choices(blank="Choose a region")
        # A value outside the choices is for the service to name, not for Django to reword.
        self.fields["default_region"].valid_value = lambda value: True  # type: ignore[method-assign]
        self.fields["default_mode"].valid_value = lambda value: True  # type: ignore[method-assign]

    @classmethod
    def for_profile(cls, profile: ProviderProfile | None) -> ProviderProfileForm:
        if profile is None:
            return cls()
        return cls(
            initial={
                "display_name": profile.display_name,
                "payout_evm_address": profile.payout_evm_address,
                "payout_solana_address": profile.payout_solana_address,
                "default_region": profile.default_region_id or "",
                "default_mode": profile.default_mode,
            }
        )

    def modes(self) -> list[dict[str, str]]:
        """The mode radios with their one-line explanations."""
        current = self["default_mode"].value() or NodeMode.FIZZ
        return [
            {"value": value, "label": label, "help": MODE_HELP[value], "checked": value == current}
            for value, label in NodeMode.choices
        ]


class NodeTokenForm(forms.Form):
    label = forms.CharField(
        label="Label",
        required=False,  # the service says what is missing, in its own words
        max_length=200,
        help_text="Which machine the token is for, e.g. “rig-1 in the garage”.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "rig-1"}),
    )
    mode = forms.ChoiceField(label="Mode", choices=NodeMode.choices)
    region = forms.ChoiceField(label="Region", required=False, help_text="Empty: your default region.")

    def __init__(self, *args: Any, provider: ProviderProfile, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"mode": provider.default_mode})
        super().__init__(*args, **kwargs)
        default = provider.default_region.name if provider.default_region else "none set"
        self.fields["region"].choices = region_choices(blank=f"Default ({default})")
        self.fields["region"].valid_value = lambda value: True  # type: ignore[method-assign]
        self.fields["mode"].valid_value = lambda value: True  # type: ignore[method-assign]


UNIT_PRICE_FIELDS = {
    "cpu_per_core_month": ("CPU", "per core-month", "cpu_price_per_core_month_micros"),
    "memory_per_gb_month": ("Memory", "per GB-month", "memory_price_per_gb_month_micros"),
    "storage_per_gb_month": ("Storage", "per GB-month", "storage_price_per_gb_month_micros"),
}


class ProviderPricesForm(forms.Form):
    """One optional price per GPU model (`gpu_<slug>`, blank = not offered) and the three unit prices."""

    def __init__(
        self,
        *args: Any,
        provider: ProviderProfile,
        gpu_models: list[GpuModel],
        gpu_prices: dict[str, int],
        **kwargs: Any,
    ) -> None:
        initial = {f"gpu_{slug}": micros_to_input(micros) for slug, micros in gpu_prices.items()}
        for name, (_label, _unit, attribute) in UNIT_PRICE_FIELDS.items():
            initial[name] = micros_to_input(getattr(provider, attribute))
        kwargs.setdefault("initial", initial)
        super().__init__(*args, **kwargs)
        self.gpu_models = gpu_models
        for model in gpu_models:
            self.fields[f"gpu_{model.slug}"] = forms.CharField(
                label=model.name,
                required=False,
                max_length=40,
                widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "not offered", "size": 9}),
            )
        for name, (label, unit, _attribute) in UNIT_PRICE_FIELDS.items():
            self.fields[name] = forms.CharField(
                label=f"{label} {unit}",
                required=False,
                max_length=40,
                widget=forms.TextInput(attrs={"inputmode": "decimal", "size": 9}),
            )

    def gpu_rows(self) -> list[dict[str, Any]]:
        return [{"model": model, "field": self[f"gpu_{model.slug}"]} for model in self.gpu_models]

    def unit_rows(self) -> list[dict[str, Any]]:
        return [
            {"label": label, "unit": unit, "field": self[name]} for name, (label, unit, _a) in UNIT_PRICE_FIELDS.items()
        ]

    def gpu_prices(self) -> dict[str, str]:
        return {model.slug: (self.cleaned_data.get(f"gpu_{model.slug}") or "").strip() for model in self.gpu_models}
