"""Export (the workstation side, TensorFlow): a run's Keras model -> checked, self-describing .tflite files.

Modules, in data-flow order: modes (the table of quantisation modes; no TensorFlow), convert
(Keras -> .tflite bytes, either quantiser), diagnose (per-op int8 error, mixed models), job (the
`edgecls export` job), report (metadata, export.json, the table), sweep (calibration-size
sweep), analyses (bench's --diagnose / --calib-sweep sections). Importing this package imports
no TensorFlow.
"""
