"""A logging filter that keeps credentials out of every log line.

Installed on the handlers in settings.LOGGING, so it sees records from every logger (a filter on
a logger would miss records that propagate from its children). It formats the message once,
replaces anything shaped like one of our credentials (API keys `sph_…`, node tokens `fzt_…`, node
secrets `nsk_<id>_…`), a Stripe key or an HTTP credential (`Bearer …`, `Basic …`, `Token …`, a whole
`Authorization:` header, a library's "Unexpected auth - '…'" line) with `[redacted]`, and does the
same to the formatted traceback.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

_PATTERNS = [
    # A library echoing a header it did not understand (django-ninja's HttpBearer does, with DEBUG).
    re.compile(r"(Unexpected auth - ).*", re.DOTALL),
    # A header as written in a dump: everything to the end of the line.
    re.compile(r"(?i)((?:HTTP_)?(?:PROXY_)?AUTHORIZATION['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"]+"),
    # A scheme and a value that looks generated (a digit, a symbol or a capital inside), not prose
    # such as "token revoked".
    re.compile(
        r"(\b(?i:bearer|basic|token|digest|apikey|api-key|negotiate)\s+)"
        r"(?=[A-Za-z0-9._~+/=:-]*?(?:[0-9+/=_~:.-]|[a-z][A-Z]))[A-Za-z0-9._~+/=:-]{4,}"
    ),
    # The project's credential formats, wherever they appear (a URL, a form dump, an exception).
    re.compile(r"()(?:sph|fzt)_[A-Za-z0-9_-]{8,}"),
    re.compile(r"()nsk_[0-9]+_[A-Za-z0-9_-]+"),
    re.compile(r"()(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"),
    re.compile(r"()whsec_[A-Za-z0-9+/=]{8,}"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Never drops a record; rewrites its message (and traceback) without credentials."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record to the handler's own error path
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
