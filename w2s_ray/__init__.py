"""w2s_ray: weak-to-strong generalization experiments as a distributed search."""

__version__ = "0.1.0"
