"""INT8 calibration for TensorRT's implicit-quantisation fallback (TensorRT 10 only): the calibration
images (read and prepared without TensorRT, unit-tested) and the entropy calibrator that feeds them.

Bundles with Q/DQ graphs (python -m engines.quantize) need none of this: see csk_ros/backends/trt_build.py
for why calibration batches are float32 and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from csk_ros.backends.engine_check import expected_io
from csk_ros.bundle import Bundle, atomic_write_bytes
from csk_ros.backends.trt_build import DEFAULT_CALIB_IMAGES, EngineBuildError, cuda_check, import_cudart, import_tensorrt

# --------------------------------------------------------------------------- INT8 calibration data

EO_DIRS = ("eo", "rgb", "vi", "visible", "color")
IR_DIRS = ("ir", "thermal", "lwir", "th")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
CALIB_LAYOUT = ("calibration images: either paired folders <dir>/{eo|rgb|vi}/NAME.png + <dir>/{ir|thermal}/NAME.png "
                "(matched by file name), or 4-channel RGB+thermal images (MFNet style) directly in <dir>; an "
                "IR-only graph also accepts single-channel thermal images directly in <dir>")


def _images(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS}


def _subdir(root: Path, names) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def calibration_sources(images_dir, inputs: tuple[str, ...], max_images: int) -> list[tuple[Path | None, Path | None]]:
    """(eo file, ir file) per calibration sample; a packed file appears in both slots."""
    root = Path(images_dir).expanduser()
    if not root.is_dir():
        raise ValueError(f"calibration image folder not found: {root}")
    eo_dir, ir_dir = _subdir(root, EO_DIRS), _subdir(root, IR_DIRS)
    need_eo, need_ir = "eo" in inputs, "ir" in inputs
    if (need_eo and eo_dir) or (need_ir and ir_dir):
        if (need_eo and eo_dir is None) or (need_ir and ir_dir is None):
            raise ValueError(f"{root}: graph inputs {list(inputs)} need both an EO and an IR folder; {CALIB_LAYOUT}")
        eo = _images(eo_dir) if need_eo and eo_dir is not None else {}
        ir = _images(ir_dir) if need_ir and ir_dir is not None else {}
        stems = sorted(set(eo) & set(ir)) if need_eo and need_ir else sorted(eo or ir)
        items: list[tuple[Path | None, Path | None]] = [(eo.get(s), ir.get(s)) for s in stems]
    else:
        items = [(p, p) for p in _images(root).values()]
    if not items:
        raise ValueError(f"no calibration images for inputs {list(inputs)} in {root}; {CALIB_LAYOUT}")
    return items[:max_images]


def _read_any(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read calibration image {path}")
    return img


def _split_channels(img: np.ndarray, path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(EO RGB, IR) from one image as OpenCV read it (BGR order)."""
    if img.ndim == 2:
        return None, img
    if img.shape[2] == 4:  # MFNet: B, G, R, thermal
        return img[..., 2::-1], img[..., 3]
    if img.shape[2] == 3:
        grey = img[..., 0] if (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all() else None
        return img[..., ::-1], grey
    raise ValueError(f"calibration image {path} has {img.shape[2]} channels; expected 1, 3 or 4")


def _to_uint8_eo(eo: np.ndarray) -> np.ndarray:
    if eo.dtype == np.uint16:
        return (eo.astype(np.uint32) // 257).astype(np.uint8)
    if eo.dtype != np.uint8:
        raise ValueError(f"EO calibration images must be 8 or 16 bit, got {eo.dtype}")
    return eo


def calibration_batches(images_dir, height: int, width: int, inputs: tuple[str, ...],
                        max_images: int = DEFAULT_CALIB_IMAGES, thermal=None):
    """Iterator of graph feeds {'eo': [1,H,W,3] uint8 RGB, 'ir': [1,H,W] uint8} from
    real images, resized (bilinear, as the eval transform) to the bundle size.
    Thermal of more than 8 bits is scaled with the bundle's thermal rule before
    resizing, as in training. The graphs normalise internally, so these raw camera
    bytes are exactly what the engine sees at run time. The folder is listed (and
    a bad folder reported) at call time; images are read lazily, one per step."""
    from csk_ros.imaging.thermal import ThermalScaling, scale_thermal_to_uint8

    inputs = tuple(inputs)
    unknown = [i for i in inputs if i not in ("eo", "ir")]
    if unknown or not inputs:
        raise ValueError(f"graph inputs must be some of ('eo', 'ir'), got {inputs}")
    rule = thermal if isinstance(thermal, ThermalScaling) else ThermalScaling.from_dict(thermal)
    items = calibration_sources(images_dir, inputs, max_images)

    def generate():
        import cv2

        for eo_path, ir_path in items:
            cache: dict[Path, tuple] = {}
            feed = {}
            for name, path in (("eo", eo_path), ("ir", ir_path)):
                if name not in inputs:
                    continue
                if path is None:  # calibration_sources pairs every needed input; say so should that change
                    raise ValueError(f"calibration sample without an {name.upper()} image; {CALIB_LAYOUT}")
                if path not in cache:
                    cache[path] = _split_channels(_read_any(path), path)
                eo, ir = cache[path]
                if name == "eo":
                    if eo is None:
                        raise ValueError(f"{path} has no colour channels for the EO input; {CALIB_LAYOUT}")
                    img = _to_uint8_eo(np.ascontiguousarray(eo))
                else:
                    if ir is None:
                        raise ValueError(f"{path} has no thermal channel for the IR input; {CALIB_LAYOUT}")
                    img = scale_thermal_to_uint8(np.ascontiguousarray(ir), rule)
                img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
                feed[name] = np.ascontiguousarray(img[None], dtype=np.uint8)
            yield feed

    return generate()


def make_entropy_calibrator(images_dir, bundle: Bundle, graph: str, cache_path, max_images: int = DEFAULT_CALIB_IMAGES):
    """An instance of a trt.IInt8EntropyCalibrator2 subclass feeding real images:
    the TensorRT-10-only fallback for bundles without a Q/DQ graph.

    TensorRT hands `get_batch` the names of the network inputs and expects one
    device pointer each, holding a batch of the input's shape in FLOAT32 for
    every non-index input, uint8 ones included: prod(shape) * 4 bytes per input
    (Polygraphy's calibrator converts inputs to float32 for this reason). So the
    raw camera bytes are converted to float32 with the SAME values (0..255, no
    normalisation: the in-graph Cast + normalisation run during calibration like
    at run time). The batch size is 1 (explicit batch; get_batch_size is
    deprecated in TensorRT 10 and only has to agree). The cache is written after
    calibration and reused on the next build if it exists.

    TensorRT swallows an exception raised inside get_batch and ends calibration
    as if the data had run out, so get_batch keeps the exception and `verify()`
    (build_engine_bytes calls it after the build) fails when calibration ran on
    fewer batches than it was given."""
    trt = import_tensorrt()
    cudart = import_cudart()
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise EngineBuildError(f"TensorRT {trt.__version__} has no calibrator INT8 (removed in TensorRT 11): "
                               "build INT8 from the bundle's Q/DQ graph (python -m engines.quantize)")
    inputs = bundle.graphs[graph].inputs
    # A cache TensorRT accepts is enough, but one from another TensorRT is rejected and TensorRT asks for
    # batches: so images, when given, are always made ready (read lazily: nothing is read if unused).
    have_cache = Path(cache_path).is_file()
    use_images = images_dir is not None and (not have_cache or Path(images_dir).is_dir())
    expected = len(calibration_sources(images_dir, inputs, max_images)) if use_images else 0
    batches = calibration_batches(images_dir, bundle.height, bundle.width, inputs, max_images,
                                  bundle.thermal_scaling) if use_images else iter(())
    shapes = {k: v[1] for k, v in expected_io(bundle, graph).items() if v[0] == "input"}

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.nbytes = {n: int(np.prod(s)) * np.dtype(np.float32).itemsize for n, s in shapes.items()}
            self.device = {n: cuda_check(cudart.cudaMalloc(b), "cudaMalloc") for n, b in self.nbytes.items()}
            self.expected, self.count, self.asked, self.error = expected, 0, 0, None
            self.cache_errors: list[str] = []  # read/write failures TensorRT would swallow

        def get_batch_size(self):
            return 1

        def get_batch(self, names) -> list[int]:
            """Device pointers of the next batch, or [] when there is none (TensorRT 10 accepts [] or None)."""
            self.asked += 1
            try:
                feed = next(batches, None)
                if feed is None:
                    return []
                for name in names:
                    array = np.ascontiguousarray(feed[name], dtype=np.float32)  # same values, float32
                    if array.nbytes != self.nbytes[name]:
                        raise ValueError(f"calibration input '{name}' has {array.nbytes} bytes, the engine input "
                                         f"takes {self.nbytes[name]}")
                    cuda_check(cudart.cudaMemcpy(self.device[name], array.ctypes.data, array.nbytes,
                                                 cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy")
            except Exception as exc:  # TensorRT would swallow it and stop calibrating: keep it for verify()
                self.error = exc
                return []
            self.count += 1
            return [int(self.device[name]) for name in names]

        def read_calibration_cache(self):
            """The cache's bytes, or None (calibrate). TensorRT swallows an exception raised here, so an
            unreadable cache is recorded in cache_errors (verify() reports it) and calibration runs."""
            try:
                return self.cache_path.read_bytes() if self.cache_path.is_file() else None
            except OSError as exc:
                self.cache_errors.append(f"could not read the INT8 calibration cache {self.cache_path} "
                                         f"({type(exc).__name__}: {exc}); calibrated on the images instead")
                return None

        def write_calibration_cache(self, cache):
            """Keep the cache for the next build. TensorRT swallows an exception raised here (a read-only
            bundle would silently lose its cache), so a failure is recorded in cache_errors instead."""
            try:
                atomic_write_bytes(self.cache_path, bytes(cache))
            except OSError as exc:
                self.cache_errors.append(f"could not write the INT8 calibration cache {self.cache_path} "
                                         f"({type(exc).__name__}: {exc}); the next build calibrates again: "
                                         "make the folder writable or pass --calib-cache")

        def verify(self, log=None):
            """Report cache read/write failures through `log`, and raise when calibration stopped
            early (see above); nothing to check when TensorRT used the cache and never asked for a batch."""
            for problem in self.cache_errors:
                if log:
                    log(f"warning: {problem}")
            if self.error is not None:
                raise EngineBuildError(f"INT8 calibration of '{graph}' failed at batch {self.count + 1} of "
                                       f"{self.expected}: {type(self.error).__name__}: {self.error}")
            if self.asked and self.count < max(self.expected, 1):
                why = ("its calibration cache was rejected and no images were given (pass --calib-images)"
                       if not self.expected else "TensorRT stopped asking")
                raise EngineBuildError(f"INT8 calibration of '{graph}' ran on {self.count} of {self.expected} "
                                       f"batches: {why}")

        def free(self):
            for ptr in self.device.values():
                cudart.cudaFree(ptr)
            self.device = {}

    return EntropyCalibrator()
