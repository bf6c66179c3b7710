"""Test double of cuda-python's runtime module: (error, value) tuples, ctypes memory."""
import ctypes
import enum
import os
import warnings


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


OK = cudaError_t.cudaSuccess
LIVE = {}


def _alloc(n):
    buf = ctypes.create_string_buffer(max(int(n), 1))
    LIVE[ctypes.addressof(buf)] = buf
    return ctypes.addressof(buf)


def cudaMalloc(n):
    return OK, _alloc(n)


def cudaMallocHost(n):
    return OK, _alloc(n)


def cudaFree(p):
    LIVE.pop(int(p))
    return (OK,)


def allocation_size(p):
    """Test helper (not cuda-python): bytes from p to the end of its allocation, 0 if p is not allocated."""
    for base, buf in LIVE.items():
        if base <= int(p) < base + ctypes.sizeof(buf):
            return base + ctypes.sizeof(buf) - int(p)
    return 0


cudaFreeHost = cudaFree


STREAMS = set()


class cudaStream_t:
    """Like cuda-python's: int() is the handle, getPtr() the address of its storage."""

    def __init__(self):
        self._storage = _alloc(8)
        self._handle = _alloc(8)
        STREAMS.add(self._handle)

    def __int__(self):
        warnings.warn("int(cuda_obj) is deprecated: use cuda.bindings.utils.get_cuda_native_handle",
                      DeprecationWarning, stacklevel=2)  # documented since cuda-bindings 12.8
        return self._handle

    __index__ = __int__

    def getPtr(self):
        return self._storage


def cudaStreamCreate():
    return OK, cudaStream_t()


def cudaStreamSynchronize(stream):
    return (OK,)


def cudaStreamDestroy(stream):
    STREAMS.discard(stream._handle)
    LIVE.pop(stream._handle)
    LIVE.pop(stream.getPtr())
    return (OK,)


def cudaMemcpyAsync(dst, src, n, kind, stream):
    assert isinstance(stream, cudaStream_t)
    ctypes.memmove(int(dst), int(src), int(n))
    return (OK,)


def cudaMemcpy(dst, src, n, kind):
    ctypes.memmove(int(dst), int(src), int(n))
    return (OK,)


def startup_error():
    """Test helper (not cuda-python): the error CUDA start-up gives under the FAKE_CUDA_* switches.
    Real cuda-bindings 12.9 and 13.x return cudaErrorInsufficientDriver both with a driver older than
    their CUDA and with no driver at all; cudaDriverGetVersion then tells the two apart (0: none)."""
    if os.environ.get("FAKE_CUDA_NO_DEVICE"):
        return cudaError_t.cudaErrorNoDevice
    if os.environ.get("FAKE_CUDA_OLD_DRIVER") or os.environ.get("FAKE_CUDA_NO_DRIVER"):
        return cudaError_t.cudaErrorInsufficientDriver
    return OK


def cudaGetDeviceCount():
    err = startup_error()
    return (err, 1 if err == OK else None)


def cudaGetDevice():
    err = startup_error()
    return (err, 0 if err == OK else None)  # real cuda-bindings give None as the value on failure


def cudaDriverGetVersion():
    """0 without a driver (documented CUDA behaviour, and what cuda-bindings return with no driver)."""
    if os.environ.get("FAKE_CUDA_NO_DRIVER"):
        return OK, 0
    return OK, 12060  # a JetPack 6 driver: CUDA 12.6


def cudaRuntimeGetVersion():
    """cuda-python's CUDA: 13.x in the 'newer than the driver' case, else 12.9."""
    return OK, 13050 if os.environ.get("FAKE_CUDA_OLD_DRIVER") else 12090


class cudaDeviceProp:
    name = b"Fake GPU 9000" + bytes(243)
    major, minor = 8, 7

    @property
    def multiProcessorCount(self):
        return int(os.environ.get("FAKE_CUDA_SM_COUNT", "16"))


def cudaGetDeviceProperties(device):
    return OK, cudaDeviceProp()
