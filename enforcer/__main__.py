from enforcer.cli import main

raise SystemExit(main())
