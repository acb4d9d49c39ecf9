"""Calibrated confidence and an "unknown" answer for a .tflite classifier, with no TensorFlow:

    fit (temperature, prototypes, thresholds; numpy) -> graph (flatbuffer surgery) -> job (one model)
        -> folder (`edgecls calibrate MODEL --data FOLDER`: images from a folder)

The device side that applies the result is edgecls.runtime.openset.
"""
