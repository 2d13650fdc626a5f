"""Regression with the popular 10-32-16-1 GradientTape example, made whole."""
