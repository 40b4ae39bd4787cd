from hopcodec.cli import main

raise SystemExit(main())
