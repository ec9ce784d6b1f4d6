# PLACEHOLDER: being written
from .base import Layer
class Flatten(Layer): pass
