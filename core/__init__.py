"""The floor: shared helpers (errors, money, clock, db, query, admin tools, ...) that import no app.

Every app may import `core`; `core` imports Django and libraries only, never an app or
`spheron_web` (tests/test_layers.py checks it).
"""
