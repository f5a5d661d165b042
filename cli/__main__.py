"""`python -m edurank.cli`: the same command line as the `edurank` script."""

from edurank.cli.main import main

raise SystemExit(main())
