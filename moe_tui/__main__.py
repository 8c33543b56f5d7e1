"""``python -m moe_tui`` is the ``moe-tui`` command."""

from moe_tui.cli import main

raise SystemExit(main())
