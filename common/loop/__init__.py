"""The training loop: the outer loop, its train state, steps, stops and progress."""
