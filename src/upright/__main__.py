import sys

from upright.cli import main

if __name__ == "__main__":  # a worker's process may import this module
    sys.exit(main())
