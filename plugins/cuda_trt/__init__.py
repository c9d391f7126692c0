"""NVIDIA GPUs through TensorRT (``gpu/tensorrt``) and PyTorch CUDA (``gpu/torch``)."""
