"""Precise batch-norm statistics (edgecls.train.batchnorm): recomputed exactly, frozen ones left alone."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgecls.train.batchnorm import refresh_statistics, trainable_batch_norms  # noqa: E402


def test_refresh_sets_the_mean_over_the_images_and_keeps_frozen_batch_norm():
    inner = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(name="inner_bn")])
    inputs = keras.Input((4, 4, 2))
    trained = keras.layers.BatchNormalization(name="trained_bn")
    model = keras.Model(inputs, inner(trained(inputs)))
    inner.trainable = False  # like a frozen pretrained backbone
    assert trainable_batch_norms(model) == [trained]

    rng = np.random.default_rng(0)
    images = rng.normal([100.0, -20.0], [5.0, 2.0], (96, 4, 4, 2)).astype(np.float32)
    refresh_statistics(model, images, batch_size=32)
    # The plain mean over the three batches, not a momentum-weighted trail of them.
    batches = images.reshape(3, -1, 2)
    np.testing.assert_allclose(trained.moving_mean.numpy(), batches.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(trained.moving_variance.numpy(), batches.var(1).mean(0), rtol=1e-4)
    assert trained.momentum == 0.99  # put back
    bn = inner.get_layer("inner_bn")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(2))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(2))
