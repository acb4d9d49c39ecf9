"""Training (the workstation side, TensorFlow): options -> architectures -> the train job -> a run directory.

Modules: options (TrainOptions, the TOML config, validation; no TensorFlow), model (the Keras
architectures and augmentation), fit (the `edgecls train` job). Importing this package imports
no TensorFlow.
"""
