"""TPUs (and any XLA device) through JAX/torchax (``tpu/jax``), TensorFlow (``tpu/tensorflow``) and PyTorch/XLA."""
