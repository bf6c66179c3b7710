"""Test double of the TensorRT 10 Python API used by csk_ros (NOT TensorRT)."""
import ctypes
import json
import os

import numpy as np
import onnx

__version__ = "10.99.1"
MAGIC = b"FAKE-TRT-ENGINE\n"


class _E:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = 0, 1, 2, 3, 4  # ILogger.Severity's values

    def __init__(self, min_severity=2):
        pass


LOG = []  # what real TensorRT would print through its logger (test helper)
_REGISTERED = []  # TensorRT keeps ONE global logger: the first one a Builder or Runtime got


def _register(logger):
    """Real TensorRT warns when a Builder/Runtime gets a logger other than the one it registered first."""
    if not _REGISTERED:
        _REGISTERED.append(logger)
    elif logger is not _REGISTERED[0]:
        LOG.append("[W] Logger passed to this object differs from the one already registered; the registered "
                   "logger is used")


class TensorIOMode:
    NONE, INPUT, OUTPUT = _E("NONE"), _E("INPUT"), _E("OUTPUT")


class ExecutionContextAllocationStrategy:
    STATIC, ON_PROFILE_CHANGE, USER_MANAGED = _E("STATIC"), _E("ON_PROFILE_CHANGE"), _E("USER_MANAGED")


class MemoryPoolType:
    WORKSPACE = _E("WORKSPACE")


class BuilderFlag:
    FP16, INT8 = _E("FP16"), _E("INT8")


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH, STRONGLY_TYPED = 0, 1  # enum values; create_network takes 1 << value


class DataType:
    UINT8, FLOAT, INT64 = _E("UINT8"), _E("FLOAT"), _E("INT64")


_DTYPES = {"uint8": DataType.UINT8, "float32": DataType.FLOAT, "int64": DataType.INT64}


def nptype(t):
    return {DataType.UINT8: np.uint8, DataType.FLOAT: np.float32, DataType.INT64: np.int64}[t]


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class _ParserError:
    def __init__(self, desc, node, name, op):
        self._d, self._n, self._name, self._op = desc, node, name, op

    def desc(self):
        return self._d

    def node(self):
        return self._n

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


class _Network:
    model = None
    strongly_typed = False


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]

    def parse_from_file(self, model):
        model = onnx.shape_inference.infer_shapes(onnx.load(model))
        types = {v.name: v.type.tensor_type.elem_type
                 for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]}
        outputs = {o.name for o in model.graph.output}
        for i, node in enumerate(model.graph.node):
            for t in node.output:
                if t not in outputs and types.get(t) == onnx.TensorProto.UINT8:
                    self.errors.append(_ParserError("TensorRT does not support UINT8 types for intermediate "
                                                    "tensors!", i, node.name, node.op_type))
            if self._bad_uint8_cast(node, types):
                # DataType.UINT8 (TensorRT 10 docs): "uint8 conversions are only supported for {float32, float16}";
                # which phase (parse or build) reports it on real TensorRT is unverified
                self.errors.append(_ParserError("uint8 conversions are only supported for {float32, float16}", i,
                                                node.name, node.op_type))
        if self.errors:
            return False
        self.network.model = model
        return True

    @staticmethod
    def _bad_uint8_cast(node, types):
        to = next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None
        source = types.get(node.input[0]) if node.input else None
        return to == onnx.TensorProto.UINT8 and source not in (None, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)


class _Config:
    def __init__(self):
        self.flags, self.pools, self.int8_calibrator = [], {}, None

    def set_memory_pool_limit(self, pool, pool_size):
        self.pools[pool.name] = pool_size

    def set_flag(self, flag):
        self.flags.append(flag.name)


def _io(model):
    def shape(v):
        return [d.dim_value for d in v.type.tensor_type.shape.dim]
    name_of = {1: "float32", 2: "uint8", 7: "int64"}
    return ([[v.name, "INPUT", shape(v), name_of[v.type.tensor_type.elem_type]] for v in model.graph.input] +
            [[v.name, "OUTPUT", shape(v), name_of[v.type.tensor_type.elem_type]] for v in model.graph.output])


def _need_cuda():
    """Real trt.Builder / trt.Runtime raise this TypeError when CUDA cannot initialise."""
    import cuda.bindings.runtime as cudart

    if cudart.startup_error() != cudart.OK:
        raise TypeError("pybind11::init(): factory function returned nullptr")


class Builder:
    def __init__(self, logger):
        _need_cuda()
        _register(logger)
        self.logger = logger

    def create_network(self, flags=0):
        assert flags in (0, 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED), \
            "TensorRT 10 networks are explicit-batch; only STRONGLY_TYPED may be asked for"
        network = _Network()
        network.strongly_typed = bool(flags)
        return network

    def create_builder_config(self):
        return _Config()

    def build_serialized_network(self, network, config):
        if os.environ.get("FAKE_TRT_BUILD_FAILS") or network.model is None:
            return None
        io = _io(network.model)
        graph = network.model.graph
        info = {"io": io, "mem": 4096 * (len(graph.node) + len(graph.input)), "flags": config.flags,
                "pools": config.pools, "strongly_typed": network.strongly_typed}
        qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
        if network.strongly_typed and config.flags:
            return None  # precision flags on a strongly typed network are an error
        if qdq:  # explicit quantization: the scales come from the graph, a calibrator is ignored
            if not network.strongly_typed and "INT8" not in config.flags:
                return None  # weakly typed Q/DQ networks need the INT8 flag
            info.update(explicit_quantization=True, calibrator_ignored=config.int8_calibrator is not None)
            return MAGIC + json.dumps(info).encode()
        cal = config.int8_calibrator
        if cal is not None:
            import cuda.bindings.runtime as cudart
            inputs = [x for x in io if x[1] == "INPUT"]
            assert cal.get_batch_size() == 1
            cache = _swallowing(cal.read_calibration_cache)
            batches, total = 0, 0.0
            while cache is None:
                try:  # TensorRT swallows exceptions from get_batch and ends calibration
                    ptrs = cal.get_batch([n for n, _, _, _ in inputs])
                except Exception:
                    ptrs = None
                if not ptrs:  # [] or None: no more batches
                    break
                for (n, _, shape, _), p in zip(inputs, ptrs):
                    # TensorRT's contract: float32 calibration data for every non-index input, uint8 included
                    nbytes = int(np.prod(shape)) * 4
                    if cudart.allocation_size(int(p)) < nbytes:
                        raise MemoryError(f"calibration buffer for '{n}' holds {cudart.allocation_size(int(p))} "
                                          f"bytes; TensorRT reads {nbytes} (float32)")
                    total += float(np.frombuffer(ctypes.string_at(int(p), nbytes), np.float32).sum())
                batches += 1
            if cache is None:
                _swallowing(cal.write_calibration_cache, b"fake calibration table")
            info.update(calibrated_batches=batches, calibration_sum=total, used_cache=cache is not None)
        return MAGIC + json.dumps(info).encode()


def _swallowing(callback, *args):
    """Real TensorRT swallows an exception raised in a Python calibrator callback (it crosses into C++)."""
    try:
        return callback(*args)
    except Exception as exc:
        LOG.append(f"[E] exception in calibrator callback swallowed: {type(exc).__name__}: {exc}")
        return None


class _Context:
    def __init__(self, engine, strategy):
        self.engine, self.strategy, self.addresses, self.memory = engine, strategy, {}, None

    def set_device_memory(self, memory, size):
        self.memory = (memory, size)

    def set_tensor_address(self, name, memory):
        """Like TensorRT: False (and nothing bound) for an unknown tensor or a refused address."""
        if name not in {row[0] for row in self.engine.info["io"]} or not int(memory) or \
                name in os.environ.get("FAKE_TRT_REFUSE_ADDRESS", "").split(","):
            return False
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        import cuda.bindings.runtime as cudart
        assert type(stream_handle) is int and stream_handle in cudart.STREAMS, "not a live cudaStream_t handle"
        if self.strategy is ExecutionContextAllocationStrategy.USER_MANAGED:
            if self.memory is None or self.memory[1] < self.engine.device_memory_size_v2:
                return False
        io = {n: (m, s) for n, m, s, _ in self.engine.info["io"]}
        def read(n):
            return np.frombuffer(ctypes.string_at(self.addresses[n], int(np.prod(io[n][1]))), np.uint8)
        src = read("ir") if "ir" in io else read("eo").reshape(io["eo"][1])[..., 0].ravel()
        for name, data in (("mask", src), ("confidence", 255 - src)):
            ctypes.memmove(self.addresses[name], np.ascontiguousarray(data).ctypes.data, data.size)
        return True


class _Engine:
    def __init__(self, info):
        self.info = info
        self.device_memory_size_v2 = info["mem"]

    @property
    def num_io_tensors(self):
        return len(self.info["io"])

    def get_tensor_name(self, index):
        return self.info["io"][index][0]

    def _row(self, name):
        return next(r for r in self.info["io"] if r[0] == name)

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self._row(name)[1] == "INPUT" else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return tuple(self._row(name)[2])

    def get_tensor_dtype(self, name):
        return _DTYPES[self._row(name)[3]]

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        return _Context(self, strategy)


class Runtime:
    def __init__(self, logger):
        _need_cuda()
        _register(logger)
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            return None
        return _Engine(json.loads(data[len(MAGIC):]))
