"""Mixed precision: building networks under a Keras dtype policy, and running one in float32.

Under a mixed policy a layer keeps its variables in float32 and computes in bfloat16 or float16
(inputs and weights are cast when the layer is called); the trainer casts every network output to
float32 before softmax and the losses, and batch normalisation computes its statistics in float32.
"""
import contextlib

import keras

# --mixed_precision -> Keras dtype policy.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
# The CPU features with which oneDNN computes bfloat16 natively (Linux's /proc/cpuinfo names);
# without them it converts to float32 and back, slower than float32 alone.
CPU_BFLOAT16 = ("amx_bf16", "avx512_bf16")
# NVIDIA GPUs compute bfloat16 natively from Ampere (compute capability 8.0) on.
GPU_BFLOAT16 = (8, 0)


def cpu_flags(path="/proc/cpuinfo"):
    """The feature flags of this machine's processor, as Linux lists them (empty elsewhere)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose(requested, gpu_capabilities, flags):
    """(precision, why) for --mixed_precision=`requested`: 'auto' is bfloat16 where every device
    that trains computes it natively (each GPU's (major, minor) compute capability in
    `gpu_capabilities`; without GPUs, the CPU's `flags`), else float32; any other value is itself."""
    if requested != "auto":
        return requested, "as asked"
    if gpu_capabilities:
        oldest = min(gpu_capabilities)
        if oldest >= GPU_BFLOAT16:
            return "bfloat16", f"GPU compute capability {oldest[0]}.{oldest[1]} computes it natively"
        return "float32", (f"a GPU of compute capability {oldest[0]}.{oldest[1]} has no native "
                           "bfloat16 (8.0 and later do)")
    native = [flag for flag in CPU_BFLOAT16 if flag in flags]
    if native:
        return "bfloat16", f"the CPU computes it natively ({', '.join(native)})"
    return "float32", f"the CPU has no native bfloat16 ({' or '.join(CPU_BFLOAT16)})"


def resolve(requested):
    """`choose` on this machine's devices."""
    import tensorflow as tf
    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capabilities.append(tuple(details.get("compute_capability", (0, 0))))
    return choose(requested, capabilities, cpu_flags() if not capabilities else set())


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
