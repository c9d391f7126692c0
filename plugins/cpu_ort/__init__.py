"""The embedded default plugin: CPUs through ONNX Runtime (``cpu/onnxruntime``) or PyTorch (``cpu/torch``)."""
