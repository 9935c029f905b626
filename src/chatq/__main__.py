from chatq.cli import main

raise SystemExit(main())
