"""taggram's build half: architectures, checkpoint import, training, ONNX export (uses torch)."""
