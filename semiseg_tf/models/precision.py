"""Mixed precision: building networks under a Keras dtype policy, and running one in float32.

Under a mixed policy a layer keeps its variables in float32 and computes in bfloat16 or float16
(inputs and weights are cast when the layer is called); the trainer casts every network output to
float32 before softmax and the losses, and batch normalisation computes its statistics in float32.
"""
import contextlib

import keras

# --mixed_precision -> Keras dtype policy.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@contextlib.contextmanager
def building_in(precision):
    """Networks built inside compute in `precision` ('float32', 'bfloat16' or 'float16'). A layer
    takes the global policy when it is made, so the policy is put back afterwards: nothing else in
    the process (the inference commands, another run in the same process) is affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_dtype(network):
    """The precision a network computes in ('float32', 'bfloat16' or 'float16'): the lowest of its
    layers'."""
    dtypes = {layer.compute_dtype for layer in network._flatten_layers(include_self=False)}
    return next((d for d in ("float16", "bfloat16") if d in dtypes), "float32")


@contextlib.contextmanager
def in_float32(network):
    """Calls of `network` traced inside compute in float32, whatever its policy (its variables are
    float32 already). For a computation whose result is below low precision's resolution, such as
    VAT's finite-difference probe."""
    layers = [layer for layer in network._flatten_layers(include_self=True)
              if layer.dtype_policy.name != "float32"]
    previous = [layer.dtype_policy for layer in layers]
    for layer in layers:
        layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in zip(layers, previous):
            layer.dtype_policy = policy
