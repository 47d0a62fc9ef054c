import sys

from upright.cli import main

sys.exit(main())
