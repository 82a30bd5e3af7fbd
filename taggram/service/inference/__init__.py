"""Inference: the dynamic batcher (one owner per model queue) and the ONNX Runtime session."""
