"""MNIST digits with a Functional MLP, a GradientTape loop and complete TensorBoard logging."""
