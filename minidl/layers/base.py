"""Parameter and the Layer base class: state, modes, naming, (de)serialisation, devices.

A Layer owns Parameters, buffers (non-learned state such as BatchNorm's running statistics)
and child layers. Assigning one of these as an attribute registers it, so ``named_parameters``
and ``state_dict`` can walk the tree in definition order with dotted names, as in PyTorch.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np

from .. import backend
from .._shapes import float_input


# state_dict entries of PyTorch models that have no minidl counterpart (skipped on load).
TORCH_ONLY_KEYS = ("num_batches_tracked",)


class Parameter:
    """A learnable array ``data`` and the gradient ``grad`` that backward passes accumulate into."""

    def __init__(self, data):
        self.data = data
        self.grad = backend.get_array_module(data).zeros_like(data)

    @property
    def shape(self):
        """Shape of ``data``."""
        return self.data.shape

    @property
    def size(self) -> int:
        """Number of entries in ``data``."""
        return int(self.data.size)

    def zero_grad(self) -> None:
        """Reset ``grad`` to zeros in place, so references to the array stay valid."""
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Layer:
    """Base class: subclasses implement ``forward(x)`` and ``backward(dout) -> dx``.

    ``backward`` must accumulate (+=) into each Parameter's ``grad`` and must not modify
    ``dout`` in place: in a residual block the same upstream gradient feeds two branches.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_cache", None)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        if isinstance(value, (Parameter, Layer)):
            target = self._parameters if isinstance(value, Parameter) else self._children
            for registry in (self._parameters, self._buffers, self._children):
                registry.pop(name, None)
            self.__dict__.pop(name, None)
            target[name] = value
        elif name in self._buffers:
            self._buffers[name] = value  # e.g. BatchNorm replacing running_mean each step
        else:
            self._parameters.pop(name, None)
            self._children.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_children"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """Register non-learned state that belongs in ``state_dict`` and moves with ``to``."""
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def add_child(self, name: str, layer: "Layer") -> None:
        """Register a child layer under ``name`` (used by containers with numeric names)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__}: child {name!r} must be a Layer, "
                            f"got {type(layer).__name__}")
        self._children[name] = layer

    # ------------------------------------------------------------------ running
    def forward(self, x):
        """Compute the output and cache what ``backward`` needs."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout):
        """Return dL/dx for dL/d(output) ``dout``; accumulate parameter gradients."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, x):
        """``forward(x)`` after the one dtype rule: a non-float ``x`` is refused, naming the layer.

        (Weights follow the input's dtype, so an int or uint8 input would silently truncate
        them; see ``minidl._shapes.float_input``.)
        """
        if hasattr(x, "dtype"):  # not an array at all: forward's shape check names that
            float_input(x, self.describe())
        return self.forward(x)

    def describe(self) -> str:
        """One-line name for error messages, e.g. ``Conv2d(3, 16, kernel_size=(3, 3))``."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def _saved(self):
        """The cache written by the last forward; a RuntimeError if there was none."""
        if self._cache is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        return self._cache

    def _check_input(self, x, ndim: int | None = None, channels: int | None = None,
                     layout: str = "") -> tuple:
        """Return ``x.shape``; a ValueError naming this layer and the expected/actual shapes.

        ``ndim`` None accepts any rank (element-wise layers); ``channels`` checks ``shape[1]``.
        """
        name = self.describe()
        shape = getattr(x, "shape", None)
        if shape is None:
            raise ValueError(f"{name}: expected an array, got {type(x).__name__}")
        shape = tuple(shape)
        if ndim is not None and len(shape) != ndim:
            layout = layout or ("(N, C, H, W)" if ndim == 4 else "(N, C)" if ndim == 2
                                else f"{ndim}-d")
            raise ValueError(f"{name}: expected input of shape {layout}, got {shape}")
        if channels is not None and shape[1] != channels:
            raise ValueError(f"{name}: expected {channels} input channels (shape[1]), "
                             f"got input of shape {shape}")
        return shape

    def _check_dout(self, dout, expected) -> None:
        """Raise a ValueError naming this layer unless ``dout`` has the ``expected`` shape.

        Without it an element-wise backward would silently broadcast a wrongly shaped dout,
        or fail deep inside numpy with a message that names no layer.
        """
        shape = getattr(dout, "shape", None)
        if shape is None or tuple(shape) != tuple(expected):
            got = type(dout).__name__ if shape is None else tuple(shape)
            raise ValueError(f"{self.describe()}: backward expected dout of shape "
                             f"{tuple(expected)}, got {got}")

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "Layer":
        """Set training mode (batch statistics, dropout on) on this layer and its children."""
        object.__setattr__(self, "training", bool(mode))
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self) -> "Layer":
        """Set evaluation mode (running statistics, dropout off); same as ``train(False)``."""
        return self.train(False)

    # ------------------------------------------------------------------ tree walks
    def children(self):
        """The direct child layers, in definition order."""
        return list(self._children.values())

    def named_children(self):
        """``[(name, child)]`` for the direct children."""
        return list(self._children.items())

    def named_layers(self, prefix: str = ""):
        """All layers in the tree (self first) with dotted names."""
        out = [(prefix, self)]
        for name, child in self._children.items():
            out.extend(child.named_layers(f"{prefix}.{name}" if prefix else name))
        return out

    def named_parameters(self, prefix: str = ""):
        """``[(dotted name, Parameter)]`` in definition order, e.g. ``"features.3.conv1.weight"``."""
        out = []
        for name, p in self._parameters.items():
            out.append((f"{prefix}.{name}" if prefix else name, p))
        for name, child in self._children.items():
            out.extend(child.named_parameters(f"{prefix}.{name}" if prefix else name))
        return out

    def parameters(self):
        """Every Parameter in the tree, in ``named_parameters`` order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = ""):
        """``[(dotted name, array)]`` for every buffer in the tree (None for unset ones)."""
        out = [((f"{prefix}.{name}" if prefix else name), b) for name, b in self._buffers.items()]
        for name, child in self._children.items():
            out.extend(child.named_buffers(f"{prefix}.{name}" if prefix else name))
        return out

    def num_parameters(self) -> int:
        """Total number of learnable scalars."""
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Zero every parameter's gradient."""
        for p in self.parameters():
            p.zero_grad()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """``{dotted name: numpy array}`` for parameters and buffers (copies, on the CPU)."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = backend.asnumpy(p.data).copy()
        for name, b in self.named_buffers():
            if b is not None:
                state[name] = backend.asnumpy(b).copy()
        return state

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers; shapes must match; keeps device and dtype."""
        targets = self._state_slots()
        # PyTorch's BatchNorm counts its updates in "num_batches_tracked"; minidl's momentum
        # never needs the count, so a torch state_dict's counters are skipped with a note.
        ignored = [k for k in state if k not in targets and k.endswith(TORCH_ONLY_KEYS)]
        if ignored:
            warnings.warn(f"{type(self).__name__}.load_state_dict: ignored {len(ignored)} "
                          f"PyTorch-only entries ({ignored[0]}, ...): minidl does not use them",
                          stacklevel=2)
            state = {k: v for k, v in state.items() if k not in ignored}
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for name, (owner, attr, kind) in targets.items():
            if name not in state:
                continue
            current = owner._parameters[attr].data if kind == "param" else owner._buffers[attr]
            value = np.asarray(backend.asnumpy(state[name]))
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"load_state_dict: {name} has shape {tuple(current.shape)} in "
                                 f"the model but {tuple(value.shape)} in the state dict")
            xp = backend.get_array_module(current)
            new = xp.array(value, dtype=current.dtype, copy=True)  # never alias the caller's arrays
            if kind == "param":
                owner._parameters[attr].data = new
            else:
                owner._buffers[attr] = new

    def extra_state(self):
        """State of this layer alone that is not an array (e.g. a random generator's), as
        JSON-ready data; None when there is none (the default). Checkpoints save it."""
        return None

    def load_extra_state(self, state) -> None:
        """Restore what ``extra_state`` returned."""
        raise NotImplementedError(f"{type(self).__name__} has no extra state to load")

    def extra_state_dict(self) -> dict:
        """``{dotted layer name: extra_state()}`` for every layer in the tree that has some."""
        states = {}
        for name, layer in self.named_layers():
            state = layer.extra_state()
            if state is not None:
                states[name] = state
        return states

    def load_extra_state_dict(self, states: dict) -> None:
        """Restore ``extra_state_dict()`` output; the layer names must match exactly."""
        own = {name for name, layer in self.named_layers() if layer.extra_state() is not None}
        if set(states) != own:
            raise KeyError(f"{type(self).__name__}.load_extra_state_dict: missing "
                           f"{sorted(own - set(states))}, unexpected {sorted(set(states) - own)}")
        layers = dict(self.named_layers())
        for name, state in states.items():
            layers[name].load_extra_state(state)

    def _state_slots(self):
        """``{dotted name: (owning layer, attribute, "param" | "buffer")}``, state_dict's keys."""
        slots = OrderedDict()
        for prefix, layer in self.named_layers():
            for attr in layer._parameters:
                slots[f"{prefix}.{attr}" if prefix else attr] = (layer, attr, "param")
            for attr, buffer in layer._buffers.items():
                if buffer is not None:  # as in state_dict: an unset buffer holds no state
                    slots[f"{prefix}.{attr}" if prefix else attr] = (layer, attr, "buffer")
        return slots

    # ------------------------------------------------------------------ devices and dtypes
    def _map_arrays(self, fn) -> None:
        """Replace every parameter, gradient and set buffer in the tree by ``fn(array)``."""
        for _, layer in self.named_layers():
            for p in layer._parameters.values():
                p.data, p.grad = fn(p.data), fn(p.grad)
            for name, b in list(layer._buffers.items()):
                if b is not None:
                    layer._buffers[name] = fn(b)
            object.__setattr__(layer, "_cache", None)  # cached arrays live on the old device

    def to(self, device: str) -> "Layer":
        """Move every parameter, gradient and buffer to "cpu" (numpy) or "gpu" (cupy)."""
        backend.check_device(device)
        self._map_arrays(lambda a: backend.to_device(a, device))
        return self

    def astype(self, dtype) -> "Layer":
        """Cast floating parameters, gradients and buffers to ``dtype`` (float64 for gradchecks)."""
        def cast(a):
            return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a
        self._map_arrays(cast)
        return self

    # ------------------------------------------------------------------ display
    def extra_repr(self) -> str:
        """The hyper-parameters shown inside ``repr``'s parentheses."""
        return ""

    def __repr__(self) -> str:
        if not self._children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._children.items():
            child_lines = repr(child).splitlines()
            lines.append(f"  ({name}): " + child_lines[0])
            lines.extend("  " + line for line in child_lines[1:])
        lines.append(")")
        return "\n".join(lines)

