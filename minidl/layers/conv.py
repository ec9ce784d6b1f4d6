# PLACEHOLDER: being written
from .base import Layer
class Conv2d(Layer): pass
