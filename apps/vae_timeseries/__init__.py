"""A variational autoencoder for windows of a high-dimensional time series."""
