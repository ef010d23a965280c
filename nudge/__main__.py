import sys

from nudge.cli import main

sys.exit(main())
