"""classify()'s fast path (input written into a reused buffer, top-1 read from the raw output) gives
exactly what the general path (probabilities + top_classes) gives, for every kind of model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from edgecls.runtime import Classifier
from edgecls.runtime.model import InputSpec
from edgecls.runtime.quant import input_converter, output_converter, output_scores, row_writer

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "models" / "digits-seed"
MOBILENET = SHARED_DATA / "pretrained" / "mobilenet_v1_0.25_128_quant.tflite"


def _images(clf: Classifier, count: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shape = clf.input_spec.shape
    edges = [np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)]
    return edges + [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def _same_as_general_path(clf: Classifier) -> None:
    images = _images(clf)
    for k in (1, 3):
        for pixels in images:
            general = clf.top_classes(clf.probabilities(pixels[None])[0], k)
            assert clf.classify(pixels, top_k=k) == general
            # bit-identical scores, not merely equal after rounding
            assert [np.float64(c.score).tobytes() for c in clf.classify(pixels, top_k=k)] == \
                [np.float64(c.score).tobytes() for c in general]
    many = [p.classes for p in clf.classify_many(images, top_k=2, workers=2)]
    single = [tuple(clf.classify(p, top_k=2)) for p in images]
    if clf.output_step or clf.max_batch == 1:  # 8-bit outputs, or one image an invoke: the very same values
        assert many == single
    else:  # a float model run on a batch of 32: its kernels may round the last bit otherwise (the calibrated
        # reference float32 does on 6 of these 26 images), never the classes
        assert [[c.index for c in row] for row in many] == [[c.index for c in row] for row in single]
        assert np.allclose([[c.score for c in row] for row in many], [[c.score for c in row] for row in single],
                           rtol=1e-6, atol=1e-7)
    assert [p.classes for p in clf.classify_many(images[:1], workers=2)] == [tuple(clf.classify(images[0]))]
    if clf.max_batch > 1:  # after a batch (the input resized), a single image again
        clf.probabilities(np.stack(images[:5]))
        assert clf.classify(images[3]) == clf.top_classes(clf.probabilities(images[3][None])[0], 1)


@pytest.mark.parametrize("name", ["model_int8.tflite", "model_float32.tflite"])
def test_the_reference_models_classify_as_the_general_path(name):
    clf = Classifier(SEED / name, num_threads=1)
    assert clf._raw_top1  # the fast path is the one under test
    _same_as_general_path(clf)


@pytest.mark.parametrize("name", ["rgb_int8", "rgb_uint8_fixed", "rgb_float", "rgb_float_meta", "rgb_int8_meta",
                                  "quad_int8_meta", "quad_logits"])
def test_every_kind_of_model_classifies_as_the_general_path(models, name):
    _same_as_general_path(Classifier(getattr(models, name), num_threads=1))


@pytest.mark.shared_data
def test_a_third_party_uint8_model_classifies_as_the_general_path():
    clf = Classifier(MOBILENET, num_threads=1)
    assert clf.input_spec.dtype == np.uint8
    _same_as_general_path(clf)


@pytest.mark.parametrize("dtype, scale, zero_point, pixel_range", [
    (np.float32, 0.0, 0, (0.0, 255.0)),
    (np.float32, 0.0, 0, (-1.0, 1.0)),
    (np.uint8, 1.0, 0, (0.0, 255.0)),
    (np.int8, 1.0, -128, (0.0, 255.0)),
    (np.uint8, 1 / 128, 128, (-1.0, 1.0)),  # a table lookup
    (np.int8, 0.0078125, 0, (-1.0, 1.0)),
])
def test_the_input_written_in_place_is_the_input_made_anew(dtype, scale, zero_point, pixel_range):
    spec = InputSpec(5, 4, 3, dtype, scale, zero_point, pixel_range)
    convert = input_converter(spec)
    batch = np.random.default_rng(1).integers(0, 256, (1, 5, 4, 3), dtype=np.uint8)
    out = np.empty((1, 5, 4, 3), dtype)
    fresh, in_place = convert(batch), convert(batch, out)
    assert in_place.dtype == fresh.dtype == dtype and in_place.tobytes() == fresh.tobytes()
    # classify_many's rows: each image written into its row of a reused batch, in any order
    images = np.random.default_rng(2).integers(0, 256, (4, 5, 4, 3), dtype=np.uint8)
    rows = np.full((4, 5, 4, 3), 7, dtype)
    write_row = row_writer(spec, rows)
    for i in (2, 0, 3, 1):
        write_row(images[i], i)
    assert rows.tobytes() == convert(images).tobytes()


@pytest.mark.parametrize("dtype, scale, zero_point", [(np.int8, 1 / 256, -128), (np.uint8, 1 / 255, 0),
                                                      (np.int8, 0.1, 3)])
def test_raw_scores_are_the_dequantised_scores(dtype, scale, zero_point):
    scores = output_scores(dtype, scale, zero_point)
    every = output_converter(dtype, scale, zero_point)(np.arange(256, dtype=np.uint8).view(dtype))
    assert scores == [float(v) for v in every]


def test_raw_scores_refuse_an_order_reversing_scale():
    assert output_scores(np.int8, -0.1, 0) is None and output_scores(np.float32, 0.0, 0) is None
