"""Layers the paper's networks need that Keras lacks, each matching the PyTorch op the authors used.

Every layer accepts any input height and width (sizes are read at run time), so one network serves
321x321 training crops and full validation images alike.
"""
import contextlib

import keras
import tensorflow as tf

# The bands (channels) of the images networks built now take: registry.build sets it
# (`input_bands`), every network's image input reads it (`image_input`).
_INPUT_BANDS = [3]


@contextlib.contextmanager
def input_bands(bands):
    """Networks built inside take images of `bands` channels (3 outside)."""
    _INPUT_BANDS.append(int(bands))
    try:
        yield
    finally:
        _INPUT_BANDS.pop()


def image_input():
    """A network's image input: [N, H, W, bands] of any size."""
    return keras.Input((None, None, _INPUT_BANDS[-1]), name="image")


# PyTorch's batch norm: momentum 0.1 there is 0.9 here, eps 1e-5.
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5

# How a network's batch norm behaves in training (`--freeze_bn` and the authors' per-network choices):
BN_TRAIN = "train"                # batch statistics in training, gamma/beta trained
BN_FROZEN = "frozen"              # moving statistics always, gamma/beta fixed (DeepLab v2's backbone)
BN_FROZEN_STATS = "frozen_stats"  # moving statistics always, gamma/beta trained (the authors'
#                                   `freeze_batchnorm` for DeepLab v3+, PSPNet and the Dense U-net)
BN_FIXED_AFFINE = "fixed_affine"  # batch statistics in training, gamma/beta fixed (DeepLab v2's
#                                   backbone without `--freeze_bn`)
BN_MODES = (BN_TRAIN, BN_FROZEN, BN_FROZEN_STATS, BN_FIXED_AFFINE)


@keras.saving.register_keras_serializable("semiseg_tf")
class TorchBatchNorm(keras.layers.BatchNormalization):
    """Batch norm whose moving variance follows PyTorch's: the batch is normalised with its biased
    variance (as Keras does) but the running variance is updated with the unbiased one, n / (n - 1)
    times larger, n the values per channel in the (global) batch. Keras updates it with the biased
    one, which matters where n is small: a 1x1 pooled branch (DeepLab v3+'s image pooling,
    PSPNet's bin 1) at batch 10 has n = 10, and the teacher would normalise with a variance 10%
    lower than the authors'. Costs one multiplication per channel."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        inputs = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(inputs, None)
        shape = tf.shape(inputs)
        count = tf.cast(tf.reduce_prod(tf.gather(shape, self._reduction_axes)), inputs.dtype)
        replica_context = tf.distribute.get_replica_context()
        if self.synchronized and replica_context:   # `_moments` reduced over every replica's
            count *= replica_context.num_replicas_in_sync   # batch (the trainer's are equal)
        unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        self.moving_mean.assign(tf.cast(self.moving_mean, inputs.dtype) * self.momentum
                                + mean * (1.0 - self.momentum))
        self.moving_variance.assign(tf.cast(self.moving_variance, inputs.dtype) * self.momentum
                                    + unbiased * (1.0 - self.momentum))
        gamma = tf.cast(self.gamma, inputs.dtype) if self.scale else None
        beta = tf.cast(self.beta, inputs.dtype) if self.center else None
        outputs = keras.ops.batch_normalization(inputs, mean, variance, axis=self.axis, offset=beta,
                                                scale=gamma, epsilon=self.epsilon)
        return tf.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable("semiseg_tf")
class FrozenStatisticsBatchNorm(keras.layers.BatchNormalization):
    """Batch norm that always normalises with its moving statistics but keeps gamma/beta trainable.

    Keras ties the two together (a non-trainable BatchNormalization runs in inference mode); PyTorch's
    `bn.eval()` with `requires_grad=True`, which the authors' `freeze_batchnorm` does, separates them.
    """

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


@keras.saving.register_keras_serializable("semiseg_tf")
class FixedAffineBatchNorm(TorchBatchNorm):
    """Batch norm with batch statistics in training but gamma/beta never trained (PyTorch's
    `requires_grad=False` on a batch norm left in training mode)."""

    def build(self, input_shape):
        super().build(input_shape)
        self.gamma.trainable = False
        self.beta.trainable = False


_BN_CLASSES = {BN_TRAIN: TorchBatchNorm, BN_FROZEN: keras.layers.BatchNormalization,
               BN_FROZEN_STATS: FrozenStatisticsBatchNorm, BN_FIXED_AFFINE: FixedAffineBatchNorm}


def batch_norm(name, mode=BN_TRAIN, **kwargs):
    """A batch-norm layer with PyTorch's constants and running variance (`TorchBatchNorm`),
    behaving as `mode` (one of `BN_MODES`).

    synchronized=True: under MirroredStrategy the batch statistics are those of the global batch, so
    replicas keep identical moving statistics and match single-device training.
    """
    if mode not in BN_MODES:
        raise ValueError(f"batch-norm mode must be one of {', '.join(BN_MODES)}, not {mode!r}")
    cls = _BN_CLASSES[mode]
    layer = cls(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=True, name=name, **kwargs)
    if mode == BN_FROZEN:
        layer.trainable = False
    return layer


def random_state_variables(*nets):
    """The random-number state of the layers of `nets` that draw random numbers (Dropout,
    SpatialDropout2D, ...). Keras keeps it out of a model's weights, so a checkpoint of the weights
    alone would restart those random streams on resume: checkpoints add these."""
    states, seen = [], set()
    for net in nets:
        weights = {id(w) for w in net.weights}
        for variable in net.variables:
            if id(variable) not in weights and id(variable) not in seen:
                seen.add(id(variable))
                states.append(variable)
    return states


def torch_conv_init():
    """PyTorch's default conv/linear weight init: uniform within 1/sqrt(fan_in) (kaiming_uniform,
    a=sqrt(5))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def kaiming_normal(mode="fan_in"):
    """`torch.nn.init.kaiming_normal_` (ReLU gain, untruncated), which Keras's HeNormal is not."""
    return keras.initializers.VarianceScaling(2.0, mode, "untruncated_normal")


@keras.saving.register_keras_serializable("semiseg_tf")
class TorchBiasUniform(keras.initializers.Initializer):
    """PyTorch's default conv bias init: uniform within 1/sqrt(fan_in); fan_in is not in the bias shape."""

    def __init__(self, fan_in, seed=None):
        self.fan_in = int(fan_in)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        bound = 1.0 / self.fan_in ** 0.5
        return keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


# From this dilation on, `DilatedConv2D` computes dilated convolutions (see there).
NATIVE_DILATION_FROM = 3


def native_dilation_available(dtype):
    """Whether TensorFlow's conv2d op (and its gradients) computes dilations itself here: on GPUs
    (cuDNN), and on CPUs through oneDNN in float32 and bfloat16."""
    if tf.config.list_logical_devices("GPU"):
        return True
    from tensorflow.python.util import _pywrap_util_port     # whether oneDNN is on (no public API)
    return _pywrap_util_port.IsMklEnabled() and tf.as_dtype(dtype) in (tf.float32, tf.bfloat16)


@keras.saving.register_keras_serializable("semiseg_tf")
class DilatedConv2D(keras.layers.Conv2D):
    """Conv2D whose dilated convolution is TensorFlow's conv2d op with `dilations`, which oneDNN (CPU)
    and cuDNN (GPU) compute directly. Keras's path, tf.nn.convolution, instead rearranges the map
    with SpaceToBatchND, convolves densely and puts it back, padding the map to a multiple of the
    dilation: DeepLab v3+'s dilation 36 on its 41x41 stride-8 map becomes 144x144, 12 times the
    work, and its ASPP took half of its training step. Measured on CPU-2 (forward and backward,
    41x41 maps, batch 2): dilation 36, 2048 -> 256 channels, 5.39 s -> 0.33 s; dilation 12, 1.30 s
    -> 0.53 s; dilation 4, 512 channels, 0.40 s -> 0.34 s; at dilation 2 the padding costs little
    and Keras's path was 5-10% faster, so it keeps it (`conv` uses this class from dilation 3).
    The same weights and the same result, to float rounding. Without a GPU, TensorFlow's own CPU
    kernels (oneDNN off, or float16, which oneDNN does not take) have no dilated convolution
    gradient, so there Keras's path is kept."""

    def convolution_op(self, inputs, kernel):
        if not native_dilation_available(inputs.dtype):
            return super().convolution_op(inputs, kernel)
        return tf.nn.conv2d(inputs, kernel, strides=[1, *self.strides, 1],
                            padding=self.padding.upper(), dilations=[1, *self.dilation_rate, 1])


def conv(x, channels, kernel, name, stride=1, dilation=1, use_bias=False, kernel_initializer=None,
         bias_initializer=None):
    """A convolution padded as PyTorch's `Conv2d(padding=dilation * (kernel // 2))`.

    Keras's "same" pads stride-2 convolutions asymmetrically (more at the bottom and right); PyTorch
    pads both sides equally, so strided convolutions get an explicit zero padding first. Large
    dilations are computed by `DilatedConv2D`.
    """
    pad = dilation * (kernel // 2)
    padding = "same"
    if stride > 1 and pad > 0:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    layer = DilatedConv2D if dilation >= NATIVE_DILATION_FROM and stride == 1 else keras.layers.Conv2D
    return layer(
        channels, kernel, strides=stride, dilation_rate=dilation, padding=padding, use_bias=use_bias,
        kernel_initializer=kernel_initializer or torch_conv_init(),
        bias_initializer=bias_initializer or "zeros", name=name)(x)


def conv_bn_relu(x, channels, kernel, name, dilation=1, kernel_initializer=None, bn_mode=BN_TRAIN,
                 **bn_kwargs):
    """`conv` (no bias), batch norm, ReLU: layers `{name}_conv`, `{name}_bn`, `{name}_relu`."""
    x = conv(x, channels, kernel, f"{name}_conv", dilation=dilation,
             kernel_initializer=kernel_initializer)
    x = batch_norm(f"{name}_bn", bn_mode, **bn_kwargs)(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@keras.saving.register_keras_serializable("semiseg_tf")
class MaxPoolTorch(keras.layers.Layer):
    """PyTorch's `MaxPool2d(kernel, stride, padding, ceil_mode)`: padding never wins the max.

    With `ceil_mode` the output has ceil((size + 2 padding - kernel) / stride) + 1 positions, so the
    last window may hang past the padded input (DeepLab v2's stem: 320 -> 160 -> 81 rather than 80).
    """

    def __init__(self, kernel=3, stride=2, padding=1, ceil_mode=False, **kwargs):
        super().__init__(**kwargs)
        self.kernel, self.stride, self.padding, self.ceil_mode = kernel, stride, padding, ceil_mode

    def _extra(self, size):
        """Padding past the end that ceil mode adds so the last, partial window is pooled."""
        if not self.ceil_mode:
            return 0
        return (self.stride - (size + 2 * self.padding - self.kernel) % self.stride) % self.stride

    def call(self, x):
        shape = tf.shape(x)
        extra_h, extra_w = self._extra(shape[1]), self._extra(shape[2])
        p = self.padding
        x = tf.pad(x, [[0, 0], [p, p + extra_h], [p, p + extra_w], [0, 0]],
                   constant_values=x.dtype.min)
        return tf.nn.max_pool2d(x, self.kernel, self.stride, "VALID")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "kernel": self.kernel, "stride": self.stride,
                "padding": self.padding, "ceil_mode": self.ceil_mode}


@keras.saving.register_keras_serializable("semiseg_tf")
class ResizeLike(keras.layers.Layer):
    """Bilinearly resizes the first input to the height and width of the second (times `scale`).

    `align_corners=True` is PyTorch's (and DeepLab v2's) corner-aligned sampling, source = target *
    (in - 1) / (out - 1); False is half-pixel centres, PyTorch's `align_corners=False`, which is also
    what `tf.image.resize` does (without antialiasing).
    """

    def __init__(self, align_corners=False, scale=1, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = align_corners
        self.scale = int(scale)

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3] * self.scale
        # Bilinear resizing returns float32 whatever it is given. Under mixed precision, casting
        # first gives its gradient the same dtype as the resized input's (XLA refuses a bfloat16
        # op whose gradient comes back float32), and upsampled logits stay float32.
        x = tf.cast(x, tf.float32)
        if self.align_corners:
            return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True,
                                             half_pixel_centers=False)
        return tf.image.resize(x, size, method="bilinear")

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        height, width = (None if side is None else side * self.scale
                         for side in reference_shape[1:3])
        return (x_shape[0], height, width, x_shape[3])

    def get_config(self):
        return {**super().get_config(), "align_corners": self.align_corners, "scale": self.scale}


def _adaptive_pool_matrix(size, bins):
    """[bins, size] averaging weights of PyTorch's adaptive pooling: bin i spans
    [floor(i size / bins), ceil((i + 1) size / bins))."""
    index = tf.range(bins)[:, None]
    start = (index * size) // bins
    end = ((index + 1) * size + bins - 1) // bins
    position = tf.range(size)[None, :]
    inside = tf.cast((position >= start) & (position < end), tf.float32)
    return inside / tf.cast(end - start, tf.float32)


@keras.saving.register_keras_serializable("semiseg_tf")
class AdaptiveAveragePool(keras.layers.Layer):
    """PyTorch's `AdaptiveAvgPool2d(bins)` (PSPNet's pyramid pooling), for any input size."""

    def __init__(self, bins, **kwargs):
        super().__init__(**kwargs)
        self.bins = int(bins)

    def call(self, x):
        shape = tf.shape(x)
        rows = tf.cast(_adaptive_pool_matrix(shape[1], self.bins), x.dtype)
        cols = tf.cast(_adaptive_pool_matrix(shape[2], self.bins), x.dtype)
        return tf.einsum("ih,jw,nhwc->nijc", rows, cols, x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.bins, self.bins, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "bins": self.bins}


def centre_padding(size, multiple):
    """(before, after) padding of `size` up to a multiple of `multiple`: the smaller half before, as
    the authors' `SegCollate`."""
    total = (multiple - size % multiple) % multiple
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable("semiseg_tf")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads height and width up to multiples of `multiple`, centred (the authors' `SegCollate`).

    Zero is the mean colour after normalisation, which is what the authors pad evaluation images with.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = tf.shape(x)
        return tf.pad(x, [[0, 0], centre_padding(shape[1], self.multiple),
                          centre_padding(shape[2], self.multiple), [0, 0]])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, None, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable("semiseg_tf")
class CropLike(keras.layers.Layer):
    """Crops the first input's centre to the second's height and width: undoes `PadToMultiple`."""

    def call(self, inputs):
        x, reference = inputs
        size = tf.shape(reference)[1:3]
        offset = (tf.shape(x)[1:3] - size) // 2
        return x[:, offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1], :]

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])
