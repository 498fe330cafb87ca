"""The fizz node agent: detects the machine, registers it, heartbeats and runs leases."""

from __future__ import annotations
