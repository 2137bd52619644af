"""One module per `edgec` verb; `edgec.cli` registers them."""
