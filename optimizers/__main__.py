"""``python -m optimizers optimize PIPELINE``: the optimize command without the wattgate console script."""

from optimizers.cli import main

raise SystemExit(main())
