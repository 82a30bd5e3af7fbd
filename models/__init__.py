"""taggram's build half: architectures, checkpoint import, training and ONNX export (torch allowed)."""
