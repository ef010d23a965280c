import sys

from nudge.app.cli import main

sys.exit(main())
