"""`python -m spheron_sdk.fizz` runs the same CLI as the `fizz` console script."""

from __future__ import annotations

import sys

from spheron_sdk.fizz.cli import main

sys.exit(main())
