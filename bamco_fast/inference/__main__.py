"""``python -m bamco_fast.inference``: see :mod:`bamco_fast.inference.cli`."""

from .cli import main

raise SystemExit(main())
