"""`python -m tools.inspect_logdir LOGDIR`: what TensorBoard will show, and the logging mistakes."""

import sys

from tools.inspect_logdir import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
