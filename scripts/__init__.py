"""Build-only code and maintenance scripts (the demo grammar, the demo trainer, locks); never installed."""
