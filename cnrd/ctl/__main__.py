from cnrd.ctl import main

raise SystemExit(main())
