"""Test-wide setup, before any test imports TensorFlow: quiet C++ logs, and two CPU devices.

Splitting the CPU into two logical devices must happen before TensorFlow's first op, so it is done
here, once per session: the mirrored tests run two replicas on it, and every other test runs as
before on the default strategy, which uses the first device only.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from common import distribution

NUM_TEST_CPU_DEVICES = 2
distribution.split_cpu(NUM_TEST_CPU_DEVICES)
