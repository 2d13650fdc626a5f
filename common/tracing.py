"""`tf.function`s made anew for every run, without TensorFlow's false "retracing" warning.

TensorFlow warns "5 out of the last 5 calls to <function ...> triggered tf.function retracing" when
5 of the last 10 or so calls traced, and it counts calls per Python *code object*, over every
`tf.function` made from it. A loop that defines its step functions (or builds its readers and
writers) afresh for every run, as it must for a new model, traces each of them once; but a process
that trains several runs (`make results`, `make bench`, a notebook) makes many functions from one
`def`, and those calling a function only a few times per run (the train step, called once in
Python for its graph trace) add up to the warning, though nothing was ever traced twice.

`per_run_function` wraps the Python function in a `functools.partial`: TensorFlow's counter keys a
callable without code of its own by the callable itself, so each run's function is counted alone,
and a warning then means real retracing (new shapes, new Python values).
"""

import functools
from collections.abc import Callable

import tensorflow as tf


def per_run_function(
    python_function: Callable, **tf_function_options: object
) -> tf.types.experimental.PolymorphicFunction:
    """`tf.function(python_function, **tf_function_options)`, counted alone for retracing.

    Args:
        python_function: a function or a `functools.partial` (AutoGraph converts it as usual).
        **tf_function_options: passed to `tf.function` (`jit_compile`, `input_signature`, ...).

    Returns:
        The `tf.function`; its graphs are named after `python_function`, as `tf.function`'s are.
    """
    wrapper = functools.partial(python_function)  # No __code__, __func__ or __wrapped__: see above.
    named = getattr(python_function, "func", python_function)  # A partial's own function.
    wrapper.__name__ = getattr(named, "__name__", type(named).__name__)
    wrapper.__qualname__ = getattr(named, "__qualname__", wrapper.__name__)
    wrapper.__doc__ = getattr(named, "__doc__", None)
    return tf.function(wrapper, **tf_function_options)
