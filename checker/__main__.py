"""``python -m checker`` runs the apcheck command line."""

from .cli import main

raise SystemExit(main())
