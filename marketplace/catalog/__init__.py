"""The catalog: offers, their filters and pages, the market board and the offers API."""
