"""Checkpoints: restore with fallback, save only finite weights, settings changed on resume."""
