"""Read the tables of a .tflite flatbuffer with the generic `flatbuffers` reader, field by field.

The generated TFLite schema module ships with LiteRT and TensorFlow but not with tflite_runtime
(the only interpreter for 32-bit ARM), and TensorFlow's must not be imported on a device. So the
device side reads the few fields it needs by their slot. Writing a model (export, and
`train --backbone`, which may run on a device) keeps using the schema module's object API
(`metadata.schema()`): it needs ai-edge-litert (or TensorFlow), not tflite_runtime alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from flatbuffers import encode, number_types, packer
from flatbuffers.table import Table as _FlatTable

# Field slots (vtable offsets: 4 + 2 x the field's index, a union taking two) of the TFLite
# schema tables edgecls reads. schema.fbs only ever appends fields, so these are fixed for every
# .tflite ever written; tests/test_flatbuffer.py reads real models with them and with the schema module.
MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_METADATA = 6, 8, 12, 16
OPCODE_DEPRECATED_BUILTIN, OPCODE_CUSTOM, OPCODE_BUILTIN = 4, 6, 10  # int8, string, int32
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OPERATORS = 4, 6, 10
OPERATOR_OPCODE_INDEX, OPERATOR_INPUTS = 4, 6  # uint32, int32 vector
TENSOR_TYPE, TENSOR_BUFFER, TENSOR_QUANTIZATION = 6, 8, 12  # int8 (TensorType), uint32, table
QUANTIZATION_SCALE = 8
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 4, 6, 8  # ubyte vector, uint64, uint64
METADATA_NAME, METADATA_BUFFER = 4, 6

INT8, INT32, UINT32, UINT64 = (number_types.Int8Flags, number_types.Int32Flags, number_types.Uint32Flags,
                               number_types.Uint64Flags)


class Table:
    """One table of a flatbuffer; an absent field reads as the schema's default (0, empty, None)."""

    __slots__ = ("_table",)

    def __init__(self, data: bytes, position: int) -> None:
        self._table = _FlatTable(data, position)

    def scalar(self, slot: int, flags: type) -> int:
        offset = self._table.Offset(slot)
        return self._table.Get(flags, self._table.Pos + offset) if offset else 0

    def string(self, slot: int) -> bytes | None:
        offset = self._table.Offset(slot)
        return self._table.String(self._table.Pos + offset) if offset else None

    def table(self, slot: int) -> Table | None:
        offset = self._table.Offset(slot)
        return Table(self._table.Bytes, self._table.Indirect(self._table.Pos + offset)) if offset else None

    def vector(self, slot: int) -> tuple[int, int]:
        """(start, length) of a vector field in the file's bytes; (0, 0) when absent."""
        offset = self._table.Offset(slot)
        return (self._table.Vector(offset), self._table.VectorLen(offset)) if offset else (0, 0)

    def count(self, slot: int) -> int:
        return self.vector(slot)[1]

    def at(self, slot: int, i: int) -> Table:
        """Element `i` of a vector-of-tables field (each element is an offset to its table)."""
        start = self.vector(slot)[0]
        return Table(self._table.Bytes, self._table.Indirect(start + 4 * i))

    def tables(self, slot: int) -> Iterator[Table]:
        # Lazily: a corrupt length must not build millions of objects before the first bad read.
        start, length = self.vector(slot)
        for i in range(length):
            yield Table(self._table.Bytes, self._table.Indirect(start + 4 * i))

    def scalars(self, slot: int, flags: type) -> list[int]:
        start, length = self.vector(slot)
        return [self._table.Get(flags, start + flags.bytewidth * i) for i in range(length)]


def model_table(data: bytes) -> Table:
    """The root table (Model) of a .tflite's bytes; check_tflite_bytes has checked the identifier."""
    return Table(data, encode.Get(packer.uoffset, data, 0))


def buffer_span(buffer: Table) -> tuple[int, int]:
    """(start, length) of a Buffer's bytes in the file: inside the flatbuffer, or, for models over
    2 GB and ai-edge-quantizer's output, after it at the Buffer's offset (then > 1) and size."""
    start, length = buffer.vector(BUFFER_DATA)
    if length:
        return start, length
    return buffer.scalar(BUFFER_OFFSET, UINT64), buffer.scalar(BUFFER_SIZE, UINT64)


def holds_data(buffer: Table) -> bool:
    """Whether a Buffer holds bytes (a constant): inside the flatbuffer, or after it (see buffer_span;
    an offset of 1 is a placeholder, not data)."""
    return buffer.count(BUFFER_DATA) > 0 or buffer.scalar(BUFFER_OFFSET, UINT64) > 1
