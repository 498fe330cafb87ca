"""Spheron Web SDK: the `fizz` node agent (see spheron_sdk.fizz). Never imports Django."""

from __future__ import annotations

__version__ = "0.1.0"
