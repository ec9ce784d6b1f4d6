# PLACEHOLDER: being written
from .base import Layer
class Dropout(Layer): pass
