import sys

from sparta.cli import main

sys.exit(main())
