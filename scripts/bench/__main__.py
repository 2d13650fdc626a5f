"""`python -m scripts.bench` (`make bench`): TensorFlow imported quietly, then the bench's CLI."""

import os

# Level 2 also hides the C++ warning that an iterator stopped inside a cache() before the epoch's
# end: the eager and first-call measurements do that on purpose. Set before TensorFlow's import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import startup

# TensorFlow's C++ start-up lines would stand above the tables; an import failure still shows.
startup.import_tensorflow(show_startup_logs=False)

from scripts.bench import cli

if __name__ == "__main__":
    cli.main()
