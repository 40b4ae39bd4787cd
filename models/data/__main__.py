"""`python -m models.data prepare|recipe|features ...` (same as `hopcodec data ...`)."""

from models.data.cli import main

raise SystemExit(main())
