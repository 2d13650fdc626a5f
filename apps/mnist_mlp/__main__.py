"""Lets the app run as `python -m apps.mnist_mlp --flag=value`."""

from .main import run

run()
