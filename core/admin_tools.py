"""What the apps' admins share: view-only model admins and inlines (records the system writes are
looked at, never edited), and for actions that ask first, an intermediate page with a form (like
Django's own delete confirmation) and a required reason."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the system writes: look, never add, edit or delete. The lists do not count every row
    (these tables grow without bound)."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """The same, as an inline: no blank rows, no delete boxes."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# Kept here as a string so the admin needs no template files of its own.
_ACTION_FORM_TEMPLATE = """{% extends "admin/base_site.html" %}
{% load admin_urls %}
{% block breadcrumbs %}<div class="breadcrumbs">
<a href="{% url 'admin:index' %}">Home</a> &rsaquo;
<a href="{% url opts|admin_urlname:'changelist' %}">{{ opts.verbose_name_plural|capfirst }}</a> &rsaquo; {{ title }}
</div>{% endblock %}
{% block content %}
<p>{{ intro }}</p>
<ul>{% for obj in queryset %}<li>{{ obj }}</li>{% endfor %}</ul>
<form method="post">{% csrf_token %}
{{ form.as_div }}
{% for obj in queryset %}<input type="hidden" name="_selected_action" value="{{ obj.pk }}">{% endfor %}
<input type="hidden" name="action" value="{{ action }}">
<input type="hidden" name="apply" value="1">
<div class="submit-row"><input type="submit" class="default" value="{{ submit_label }}"></div>
</form>
{% endblock %}
"""


class ActionFormMixin:
    """For a ModelAdmin whose actions ask for input first: `action_form_page` renders the form, and
    the action runs when it comes back with "apply" and validates."""

    def action_form_page(
        self: admin.ModelAdmin,
        request: HttpRequest,
        queryset: QuerySet,
        form: forms.Form,
        *,
        action: str,
        title: str,
        intro: str,
        submit_label: str,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "intro": intro,
            "queryset": queryset,
            "form": form,
            "action": action,
            "submit_label": submit_label,
        }
        return TemplateResponse(request, engines["django"].from_string(_ACTION_FORM_TEMPLATE), context)


class ReasonForm(forms.Form):
    """A required reason (blank or spaces only: "This field is required."); subclasses restate the
    field to say where it is recorded."""

    reason = forms.CharField(max_length=300)


def change_link(obj, text: str | None = None) -> str:
    """A link to `obj`'s admin change page (its `str` unless `text`), or "" for no object."""
    if obj is None:
        return ""
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj))


def changelist_link(model, text: str, **query) -> str:
    """A link to `model`'s admin list, filtered by `query` (e.g. user__id__exact=7)."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(query), text)
