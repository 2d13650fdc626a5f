"""Flag-free helpers shared by every app: summary writers, one-time graph tracing, the step counter.

Nothing here reads absl flags; apps pass plain values in, so tests call these helpers directly.
"""
