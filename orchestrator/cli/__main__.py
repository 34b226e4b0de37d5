"""``python -m orchestrator.cli``: the same as the ``orchestrate`` command."""
from .app import main

raise SystemExit(main())
