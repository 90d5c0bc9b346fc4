"""edgekit device harness: time and evaluate one model with whatever runtime this machine has.

Self-contained on purpose (it is copied to devices): only the standard library, numpy and the
model's runtime (ai_edge_litert, else tflite_runtime, else tf.lite; onnxruntime; keras).

    python harness.py job.json

job.json: {"model": path, "format": "tflite"|"onnx"|"keras", "threads": int|null,
           "warmup": int, "runs": int, "inputs": path-to-uint8-.npy|null,
           "preprocessing": {"mean": [...], "std": [...]}, "out": folder}
Writes out/result.json (timings, memory, runtime) and out/outputs.npy (float32 scores).
"""

import json
import os
import platform
import resource
import sys
import time

import numpy as np

HARNESS_VERSION = 2


def _status_mb(field):
    """A memory field of /proc/self/status (Linux) in MB, else None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb():
    """Current resident set size (Linux /proc), else the peak as a fallback."""
    rss = _status_mb("VmRSS")
    return peak_rss_mb() if rss is None else rss


def peak_rss_mb():
    """Peak resident set size of this process image: VmHWM on Linux. Not ru_maxrss: Linux
    carries the parent's peak into a child across exec, so a harness started by a process
    holding TensorFlow reported that process's 1.7 GB."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def reset_peak():
    """Start the peak (VmHWM) afresh (Linux 4.0+); whether it could be."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def import_runtime(fmt):
    """Import the runtime before the model loads, so the model's memory is measured alone."""
    modules = {"tflite": ("ai_edge_litert.interpreter", "tflite_runtime.interpreter",
                          "tensorflow"), "onnx": ("onnxruntime",), "keras": ("keras",)}[fmt]
    for name in modules:
        try:
            __import__(name)
            return
        except ImportError:
            continue


class TFLiteModel:
    def __init__(self, path, threads, shape=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
            self.runtime = "ai_edge_litert"
        except ImportError:
            try:
                from tflite_runtime.interpreter import Interpreter
                self.runtime = "tflite_runtime"
            except ImportError:
                import tensorflow as tf
                Interpreter = tf.lite.Interpreter
                self.runtime = "tensorflow.lite"
        self.version = _version(self.runtime.split(".")[0])
        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        if shape and any(d < 0 for d in self.inp.get("shape_signature", [])):  # dynamic size
            self.interp.resize_tensor_input(self.inp["index"], list(shape))
            self.interp.allocate_tensors()
            self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.n_outputs = len(self.interp.get_output_details())
        self.batch = 1

    def input_dtype(self):
        return np.dtype(self.inp["dtype"])

    def input_quant(self):
        return self.inp["quantization"]

    def __call__(self, x):
        outs = []
        for i in range(x.shape[0]):  # TFLite models are converted for batch 1
            self.interp.set_tensor(self.inp["index"], x[i:i + 1])
            self.interp.invoke()
            outs.append(self.interp.get_tensor(self.out["index"]))
        y = np.concatenate(outs)
        scale, zero = self.out["quantization"]
        return (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)


class ONNXModel:
    def __init__(self, path, threads, providers=None):
        import onnxruntime as ort
        self.runtime, self.version = "onnxruntime", ort.__version__
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:  # onnxruntime would fall back to the CPU silently: refuse instead
            raise SystemExit(f"onnxruntime {ort.__version__} here has no {', '.join(missing)} "
                             f"(available: {', '.join(ort.get_available_providers())}); "
                             "install onnxruntime-gpu (Jetson: NVIDIA's build)")
        self.sess = ort.InferenceSession(path, opts, providers=providers)
        self.providers = self.sess.get_providers()  # what the session really uses
        self.inp = self.sess.get_inputs()[0]
        self.n_outputs = len(self.sess.get_outputs())
        static = self.inp.shape[0] if isinstance(self.inp.shape[0], int) else 0
        self.batch = static if static > 0 else 64  # a static batch (TensorRT exports: 1)

    def input_dtype(self):
        return np.dtype({"tensor(float)": "float32", "tensor(uint8)": "uint8",
                         "tensor(int8)": "int8"}.get(self.inp.type, "float32"))

    def input_quant(self):
        return (0.0, 0)

    def __call__(self, x):
        return self.sess.run(None, {self.inp.name: x})[0].astype(np.float32)


class KerasModel:
    def __init__(self, path, threads):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        import keras
        try:  # a model trained with edgekit's --qat holds its fake-quant layers
            from edgekit.optimize.qat import register
            register()
        except ImportError:  # a device without edgekit: plain Keras models only
            pass
        self.runtime, self.version = "keras", keras.__version__
        self.model = keras.saving.load_model(path, compile=False, safe_mode=True)
        self.n_outputs = len(self.model.outputs)
        self.batch = 64

    def input_dtype(self):
        return np.dtype("float32")

    def input_quant(self):
        return (0.0, 0)

    def __call__(self, x):
        return np.asarray(self.model(x, training=False), dtype=np.float32)


RUNTIMES = {"tflite": TFLiteModel, "onnx": ONNXModel, "keras": KerasModel}


def to_input(images, prep, dtype, quant, nchw):
    """uint8 NHWC images -> the model's input tensor: normalize, then quantize if needed."""
    mean = np.asarray(prep["mean"], np.float32)
    std = np.asarray(prep["std"], np.float32)
    x = (images.astype(np.float32) - mean) / std
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    scale, zero = quant
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    return np.ascontiguousarray(x.astype(dtype))


def run(job):
    out_dir = job["out"]
    threads = job.get("threads") or os.cpu_count() or 1  # default: every core of this machine
    rss_process = rss_mb()
    if job["format"] == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import_runtime(job["format"])
    rss_start = rss_mb()  # Python, numpy and the runtime: the baseline the model adds to
    peak_reset = reset_peak()
    t0 = time.perf_counter()
    extra = {"providers": job["providers"]} if job.get("providers") else {}
    if job["format"] == "tflite":
        extra["shape"] = job["input_shape"]
    model = RUNTIMES[job["format"]](job["model"], threads, **extra)
    init_ms = (time.perf_counter() - t0) * 1000.0
    rss_loaded = rss_mb()
    dtype, quant = model.input_dtype(), model.input_quant()
    prep, nchw = job["preprocessing"], bool(job.get("nchw"))
    inputs = np.load(job["inputs"], mmap_mode="r") if job.get("inputs") else None
    shape = job["input_shape"]  # NHWC of the model input, batch 1
    if inputs is not None and len(inputs):
        sample = np.asarray(inputs[:1])
    else:  # a fixed pseudo-random image: latency does not depend on pixel values
        sample = np.random.default_rng(0).integers(0, 256, size=[1] + shape[1:], dtype=np.uint8)
    x = to_input(sample, prep, dtype, quant, nchw)
    for _ in range(job.get("warmup", 0)):
        model(x)
    times = []
    for _ in range(job.get("runs", 0)):
        t = time.perf_counter_ns()
        model(x)
        times.append((time.perf_counter_ns() - t) / 1e6)
    peak_after_timing = peak_rss_mb()
    n_out = 0
    if inputs is not None and job.get("evaluate", True):
        outs = []
        for i in range(0, len(inputs), model.batch):
            outs.append(model(to_input(np.asarray(inputs[i:i + model.batch]), prep, dtype, quant,
                                       nchw)))
        scores = np.concatenate(outs) if outs else np.zeros((0,), np.float32)
        np.save(os.path.join(out_dir, "outputs.npy"), scores)  # (N, ...) as the model gives
        n_out = len(scores)
    result = {
        "harness": HARNESS_VERSION, "runtime": model.runtime, "runtime_version": model.version,
        "threads": threads, "init_ms": init_ms, "latency_ms": times,
        "rss_process_mb": rss_process, "rss_start_mb": rss_start, "rss_loaded_mb": rss_loaded,
        "peak_reset": peak_reset,
        "peak_rss_timing_mb": peak_after_timing, "peak_rss_mb": peak_rss_mb(),
        "n_outputs": n_out, "n_model_outputs": model.n_outputs, "machine": platform.machine(), "cpu": cpu_name(),
        "execution_providers": getattr(model, "providers", None),
        "llc_bytes": llc_bytes(),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "numpy": np.__version__, "system": platform.platform(),
    }
    with open(os.path.join(out_dir, "result.json"), "w") as fh:
        json.dump(result, fh)
    return result


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The feature flags /proc/cpuinfo lists for the first CPU (x86 "flags", Arm "Features");
    [] where there is no such file."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.split(":", 1)[0].strip().lower() in ("flags", "features"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot-product instructions


def x86_without_vnni():
    """Whether this machine is an x86-64 CPU without int8 dot-product instructions (None:
    its CPU flags cannot be read). Without them int8 kernels multiply with VPMADDUBSW, which
    saturates (optimize/onnx_quant.py) and gains little over float (optimize/speed.py)."""
    if platform.machine() != "x86_64":
        return False
    flags = cpu_flags()
    return not any(f in flags for f in X86_INT8_DOT) if flags else None


def llc_bytes():
    """Size of the largest (last-level) CPU cache Linux reports, or None."""
    best = (0, None)
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in os.listdir(base):
            try:
                with open(os.path.join(base, idx, "level")) as fh:
                    level = int(fh.read())
                with open(os.path.join(base, idx, "size")) as fh:
                    size = fh.read().strip().upper()
            except (OSError, ValueError):
                continue
            mult = {"K": 1024, "M": 1024 ** 2}.get(size[-1:], 1)
            value = int(size.rstrip("KM")) * mult
            best = max(best, (level, value))
    except (OSError, ValueError):
        pass
    return best[1]


def _version(module):
    try:
        from importlib import metadata
        return metadata.version({"ai_edge_litert": "ai-edge-litert",
                                 "tflite_runtime": "tflite-runtime"}.get(module, module))
    except Exception:
        return "unknown"


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        run(json.load(fh))
