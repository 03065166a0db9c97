"""Triton kernels (installed as ``bamco_fast.kernels``); imported lazily, only by the ops that use them."""
