"""Test double of cuda-python (see tests/support/fake_tensorrt/cuda/bindings/runtime.py)."""
