"""Test double of cuda.bindings.utils (cuda-bindings >= 12.8)."""


def get_cuda_native_handle(obj):
    """The handle of a CUDA object (what int(obj) gave before it was deprecated)."""
    return obj._handle
