"""edgec.kernels: per-format compute kernels (numpy reference, CPU SIMD, Triton).

Imports only numpy at module level; torch and triton are imported lazily where used.
"""
