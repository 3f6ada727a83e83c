"""TF-native augmentation: affine matrices and warps, box masks."""
