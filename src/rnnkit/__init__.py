"""rnnkit: recurrent neural networks on PyTorch, with backpropagation through time by hand."""

__version__ = "0.1.0"
