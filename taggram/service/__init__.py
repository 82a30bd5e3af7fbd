"""taggram's serving half: HTTP API, audio decoding, patching, batching and ONNX Runtime inference.

Nothing here imports torch or ``models``: the two halves meet only at the model repository.
"""
