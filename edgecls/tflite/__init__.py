"""A .tflite file as a graph: read, cut at a tensor, grafted onto, written back (graph), a pretrained
image model's embedding found (backbone), and a classifier's SOFTMAX found and a calibrated model's plain
classifier taken out of its wrapper (classifier). Below the two jobs that rewrite .tflite files on the device
side, the backbone route (edgecls.transfer) and calibration (edgecls.calibrate), so neither imports the
other's package for it.

numpy, LiteRT and the LiteRT flatbuffer schema only (edgecls.runtime): never TensorFlow.
"""
