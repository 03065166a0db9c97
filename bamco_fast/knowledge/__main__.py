"""``python -m bamco_fast.knowledge`` (see :mod:`bamco_fast.knowledge.cli`)."""

from .cli import main

raise SystemExit(main())
