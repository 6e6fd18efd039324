from exrwatchd.cli import main

raise SystemExit(main())
