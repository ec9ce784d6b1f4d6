# PLACEHOLDER: being written
from .base import Layer
class MixedSCLayer(Layer): pass
class SCLayer(Layer): pass
