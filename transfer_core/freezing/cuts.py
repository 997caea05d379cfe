"""Cuts: layers whose single output carries everything the rest of a backbone needs.

A frozen prefix ending at a cut can be computed once and cached (ARCHITECTURE.md, decision 3);
:func:`split_at` splits a backbone there into a prefix and a suffix that share its layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras


class LayerGraph:
    """The backbone's functional graph, walked back from its outputs (Keras 3 nodes)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.nodes: dict[int, Any] = {}
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, list[int]] = {}
        stack = list(base.outputs)
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            operation, node_index, _ = tensor._keras_history
            node = operation._inbound_nodes[node_index]
            self.producer[id(tensor)] = id(node)
            if id(node) in self.nodes:
                continue
            self.nodes[id(node)] = node
            for parent in node.input_tensors:
                self.consumers.setdefault(id(parent), []).append(id(node))
                stack.append(parent)
        # The node of each layer inside this graph (None when absent or called more than once).
        self.layer_nodes: list[int | None] = []
        for layer in base.layers:
            mine = [id(n) for n in layer._inbound_nodes if id(n) in self.nodes]
            self.layer_nodes.append(mine[0] if len(mine) == 1 else None)

    def output_of(self, index: int) -> Any | None:
        node_id = self.layer_nodes[index]
        if node_id is None:
            return None
        outputs = self.nodes[node_id].outputs
        return outputs[0] if len(outputs) == 1 else None

    def is_cut(self, index: int) -> bool:
        """Whether everything after layer ``index`` depends on the input only through its output."""
        tensor = self.output_of(index)
        if tensor is None:
            return False
        # Nodes that (transitively) consume the cut tensor.
        downstream: set[int] = set()
        frontier = list(self.consumers.get(id(tensor), ()))
        while frontier:
            node_id = frontier.pop()
            if node_id in downstream:
                continue
            downstream.add(node_id)
            for out in self.nodes[node_id].outputs:
                frontier.extend(self.consumers.get(id(out), ()))
        # Every downstream node must take its inputs from the cut or from downstream nodes.
        for node_id in downstream:
            for parent in self.nodes[node_id].input_tensors:
                if id(parent) != id(tensor) and self.producer.get(id(parent)) not in downstream:
                    return False
        for out in self.base.outputs:
            if id(out) != id(tensor) and self.producer.get(id(out)) not in downstream:
                return False
        # Layer order must agree: later layers downstream, earlier ones not.
        for other, node_id in enumerate(self.layer_nodes):
            if other == index or node_id is None:
                continue
            if (other > index) != (node_id in downstream):
                return False
        return True


def cut_layer(base: keras.Model, before_index: int) -> str | None:
    """The latest layer before ``before_index`` whose output is a valid cut of the graph.

    A valid cut is a layer with a single output tensor through which every later
    layer depends on the input (e.g. MobileNetV2's ``block_12_add`` or a ResNet
    block's ``_out``; the inner layers of a residual block are not cuts). With
    ``before_index = first_trainable_layer(base)`` the prefix up to the cut is
    frozen and its output can be cached.

    Args:
        base: The backbone.
        before_index: Only layers with a smaller index are considered
            (``len(base.layers)`` allows the last layer).

    Returns:
        The layer name, or None when no layer after the input qualifies.

    Raises:
        ValueError: ``before_index`` is outside ``0..len(base.layers)``.
    """
    count = len(base.layers)
    if not 0 <= before_index <= count:
        raise ValueError(f"before_index must be between 0 and {count}. Received: before_index={before_index}")
    graph = LayerGraph(base)
    for index in range(before_index - 1, 0, -1):
        if graph.is_cut(index):
            return base.layers[index].name
    return None


def split_at(base: keras.Model, layer_name: str) -> tuple[keras.Model, keras.Model]:
    """Split a backbone at a cut into a prefix and a suffix that share its layers.

    ``suffix(prefix(x))`` equals ``base(x)``; the suffix holds the very same
    layer and weight objects as ``base``, so training it trains ``base``.

    Args:
        base: The backbone.
        layer_name: A layer whose output is a valid cut (see :func:`cut_layer`).

    Returns:
        ``(prefix, suffix)``: ``base.input -> layer output`` and ``layer output -> base.output``
        (the identity when the layer is the output layer).

    Raises:
        ValueError: Unknown layer name, or the layer's output is not a valid cut
            (the message names the nearest valid cut before it).
    """
    import keras

    names = [layer.name for layer in base.layers]
    if layer_name not in names:
        raise ValueError(f"No layer named {layer_name!r} in {base.name}. Received: layer_name={layer_name!r}")
    index = names.index(layer_name)
    graph = LayerGraph(base)
    if index == 0 or not graph.is_cut(index):
        nearest = cut_layer(base, index)
        raise ValueError(
            f"Layer {layer_name!r} (index {index}) is not a valid cut of {base.name}: later layers also "
            f"depend on earlier ones. The nearest valid cut before it is {nearest!r}. "
            f"Received: layer_name={layer_name!r}"
        )
    tensor = graph.output_of(index)
    prefix = keras.Model(base.input, tensor, name=f"{base.name}_prefix")
    if index == len(base.layers) - 1 and len(base.outputs) == 1:
        # Cut at the output: nothing remains after it, so the suffix is the identity.
        identity = keras.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype)
        suffix = keras.Model(identity, identity, name=f"{base.name}_suffix")
    else:
        suffix = keras.Model(tensor, base.output, name=f"{base.name}_suffix")
    return prefix, suffix
