"""``python -m bamco_fast.data`` (see :mod:`bamco_fast.data.cli`)."""

from .cli import main

raise SystemExit(main())
