"""minidl: an autograd-free deep learning framework in NumPy, with the same code on CuPy."""
from . import backend, data, gradcheck, init, layers, losses, models, optim

__version__ = "0.1.0"
__all__ = ["backend", "gradcheck", "init", "layers", "losses", "optim", "data", "models"]
