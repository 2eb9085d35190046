"""jaxrec: a JAX/Flax research codebase for generative recommendation at scale.

Importing the package is cheap: submodules (and JAX) load only when used, e.g. `from jaxrec.data import p5`.
"""

__version__ = "0.1.0"
