#!/usr/bin/env python3
"""P9: LiteRT against ONNX Runtime on the same weights, int8, 1 thread (and float32 for reference).

The seed and mobile CNNs (benchkit.build_models, untrained Keras models) are exported both ways:
to .tflite by edgecls (full int8), and to ONNX by tf2onnx, then quantised by ONNX Runtime's static
quantiser (QDQ, per-channel int8 weights, int8 activations, calibrated on the same random images).
Latency of one image (set input, run, get output), paired per round (see benchkit), in a fresh
process without TensorFlow. Needs the benchmark-only packages: pip install 'edgecls[bench]'
(tf2onnx, onnxruntime), and the train extra to build the models.

    python scripts/bench_onnx.py [--rounds 9] [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import ARCHS, ROOT, Record, build_models, common_arguments, in_worker, median, paired, ratio  # noqa: E402


def export_onnx(keras_path: Path, shape: tuple[int, int, int], folder: Path) -> dict[str, Path]:
    """float32 ONNX (tf2onnx) and its QDQ per-channel int8 quantisation (onnxruntime)."""
    out = {"float32": folder / f"{keras_path.stem}.onnx", "int8": folder / f"{keras_path.stem}-int8.onnx"}
    if all(p.exists() for p in out.values()):
        return out
    import keras
    import numpy as np
    import tensorflow as tf
    import tf2onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = keras.models.load_model(keras_path)
    function = tf.function(lambda x: model(x, training=False))
    tf2onnx.convert.from_function(function, input_signature=[tf.TensorSpec((1, *shape), tf.float32, name="pixels")],
                                  opset=13, output_path=str(out["float32"]))
    calibration = np.random.default_rng(0).integers(0, 256, (64, 1, *shape)).astype(np.float32)  # as build_models

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"pixels": item}

    quantize_static(str(out["float32"]), str(out["int8"]), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def worker(tflite: str, onnx: str, rounds: int, seconds: float) -> dict:
    """One image's set/run/get through LiteRT and through ONNX Runtime, 1 thread each."""
    import numpy as np
    import onnxruntime as ort

    from edgecls.runtime import Classifier

    clf = Classifier(tflite, num_threads=1)
    pixels = np.random.default_rng(0).integers(0, 256, (1, *clf.input_spec.shape), dtype=np.uint8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    litert_input = clf._to_input(pixels)  # int8 model: the XOR-shifted bytes; float: float32 pixels
    interpreter, inp, out = clf.interpreter, clf._input_index, clf._output_index
    feed = {name: pixels.astype(np.float32)}

    def litert() -> None:
        interpreter.set_tensor(inp, litert_input)
        interpreter.invoke()
        interpreter.get_tensor(out)

    def onnxruntime() -> None:
        session.run(None, feed)

    def timed(fn, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n

    n = max(20, int(seconds / max(timed(onnxruntime, 20), 1e-7)))
    runs = paired({"onnxruntime": lambda: timed(onnxruntime, n), "litert": lambda: timed(litert, n)}, rounds)
    return {"litert_us": median(runs["litert"]) * 1e6, "onnxruntime_us": median(runs["onnxruntime"]) * 1e6,
            "onnxruntime_vs_litert": ratio(runs["onnxruntime"], runs["litert"]), "calls_per_round": n,
            "onnxruntime": ort.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.3, help="timed seconds per contender per round")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench", help="models [%(default)s]")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    common_arguments(parser, "runs/perf/onnx.json")
    args = parser.parse_args()
    if args.worker:
        import json

        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), float(args.worker[3]))))
        return
    if args.smoke:
        args.rounds, args.seconds = 2, 0.01
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is not installed: pip install 'edgecls[bench]' (tf2onnx, onnxruntime)") from None
    record = Record(__file__, args)
    archs = ("seed",) if args.smoke else ("seed", "mobile")
    models = build_models(args.work / "models", archs, keep_keras=True)
    for arch in archs:
        onnx = export_onnx(models[f"{arch}-keras"], ARCHS[arch][0], args.work / "models")
        for mode in ("int8",) if args.smoke else ("int8", "float32"):
            print(f"P9 {arch} {mode}: LiteRT vs ONNX Runtime ...", file=sys.stderr)
            record.figure(f"P9 {arch}-{mode}", lambda arch=arch, mode=mode, onnx=onnx: in_worker(
                __file__, str(models[f"{arch}-{mode}"]), str(onnx[mode]), str(args.rounds), str(args.seconds)))
    record.write(args.json)


if __name__ == "__main__":
    main()
