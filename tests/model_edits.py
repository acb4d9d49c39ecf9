"""Edits of a .tflite's object tree (ModelT) for fault tests and scripts/reliability_probe.py: the ops
of a kind, the subgraph that holds one, an index list changed in place."""

from __future__ import annotations

import numpy as np


def ops(model, name: str) -> list:
    """The ops named `name` in every subgraph: an exported model is calibrated, its subgraph 0 one IF
    around the classifier's subgraph (runtime/openset.py)."""
    from edgecls.runtime import tflite_names

    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if tflite_names.op_name(code.builtinCode, code.deprecatedBuiltinCode, code.customCode) == name:
                found.append(op)
    return found


def graph_of(model, op):
    """The subgraph that holds `op`."""
    return next(graph for graph in model.subgraphs if any(o is op for o in graph.operators))


def set_index(op, field: str, k: int, value: int) -> None:
    """op.<field>[k] = value (`inputs` or `outputs`)."""
    values = np.array(getattr(op, field), np.int32)
    values[k] = value
    setattr(op, field, values)
