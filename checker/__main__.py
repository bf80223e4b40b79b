"""``python -m checker`` runs the apcheck command line."""

from checker.cli.cli import main

raise SystemExit(main())
