"""Test-wide setup: quiet TensorFlow's C++ logs before any test imports it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
