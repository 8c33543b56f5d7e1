"""Inspection: one word, one expert, two runs, the routes themselves (concordance, expert card, diff, export)."""
