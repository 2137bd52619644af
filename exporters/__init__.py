"""edgec.exporters: writers for edgec's packed `.edgec` container and for ONNX."""
