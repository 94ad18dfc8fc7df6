from services.learning.cli import main

raise SystemExit(main())
