"""What training and serving share, importable without torch: the ONNX signature and
vocabulary indices, the models' request-side inputs (history, context vector) and the
co-visitation lists with the candidate features computed from them."""
