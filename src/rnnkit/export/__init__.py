"""Export: a trained run's inference graph as ONNX (``rnnkit export``; see docs/export.md)."""

from rnnkit.export.graph import Graph, export_graph
from rnnkit.export.onnx import export_run, model_graphs
from rnnkit.export.scan import ExportError

__all__ = ["ExportError", "Graph", "export_graph", "export_run", "model_graphs"]
