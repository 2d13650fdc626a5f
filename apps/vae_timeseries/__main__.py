"""Lets the app run as `python -m apps.vae_timeseries --flag=value`."""

from absl import flags

from . import main

# `--helpshort` lists the flags of the module run as __main__; the flags live in main.py.
flags.adopt_module_key_flags(main)
__doc__ = main.__doc__  # The usage text absl prints with --help.

main.run()
