"""``python -m bamco_fast.train``: see :func:`bamco_fast.train.cli.main`."""

from .cli import main

raise SystemExit(main())
