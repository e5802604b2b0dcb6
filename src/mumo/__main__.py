import sys

from mumo.cli import main

sys.exit(main())
