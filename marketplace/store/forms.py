"""The template page's form: a field per variable, the Hugging Face model and its size, and the
node when the page was opened from an offer."""

from __future__ import annotations

from typing import Any

from django import forms

from marketplace.models import Template
from marketplace.store.services import MAX_ENV_VALUE, env_var_list


def env_field_name(name: str) -> str:
    return f"env_{name}"


class TemplateForm(forms.Form):
    hf_model = forms.CharField(
        label="Hugging Face model id",
        required=False,
        max_length=200,
        help_text="organisation/name, e.g. meta-llama/Llama-3.1-8B-Instruct; empty: the template's own",
    )
    hf_model_params = forms.CharField(
        label="Model size (billions of parameters)",
        required=False,
        max_length=12,
        help_text="Only when the id does not say it (no '8B' in the name)",
    )
    node = forms.IntegerField(required=False, min_value=1, max_value=2**62, widget=forms.HiddenInput)

    def __init__(self, *args: Any, template: Template, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.template = template
        if not template.hf_model_default:
            del self.fields["hf_model"]
            del self.fields["hf_model_params"]
        else:
            self.fields["hf_model"].widget.attrs["placeholder"] = template.hf_model_default
        self.env_names = []
        for var in env_var_list(template):
            name = env_field_name(var["name"])
            self.env_names.append((name, var["name"]))
            self.fields[name] = forms.CharField(
                label=var["label"],
                required=False,  # the service says which are required, for the page and the API alike
                max_length=MAX_ENV_VALUE,
                initial="" if var["secret"] else var["default"],
                help_text=var["help"],
                widget=forms.PasswordInput(render_value=True) if var["secret"] else forms.TextInput,
            )
            self.fields[name].widget.attrs.update({"autocomplete": "off", "spellcheck": "false"})
            self.fields[name].required_marker = var["required"]

    def env_values(self) -> dict[str, str]:
        return {var: self.cleaned_data.get(field) or "" for field, var in self.env_names}

    def add_application_error(self, field: str, message: str) -> None:
        """An ApplicationError's field ('env.HF_TOKEN', 'hf_model') on the matching form field."""
        name = env_field_name(field[4:]) if field.startswith("env.") else field
        self.add_error(name if name in self.fields else None, message)
