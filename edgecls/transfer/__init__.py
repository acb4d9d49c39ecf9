"""Transfer learning on the device side: a pretrained .tflite cut at its embedding, a new head fitted
with numpy and grafted back on as TFLite ops, so the result is ONE self-describing .tflite.

    edgecls.tflite.backbone (find the embedding) -> edgecls.tflite.graph (cut, graft) -> embed (device
        runtime, cached) -> head (numpy softmax regression / one hidden layer) -> job (the run directory)

Never imports TensorFlow or Keras: numpy, Pillow, LiteRT and the LiteRT flatbuffer schema only,
so `edgecls train --backbone FILE.tflite` also works on a Raspberry Pi.
"""
