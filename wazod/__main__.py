from wazod.cli import main

raise SystemExit(main())
