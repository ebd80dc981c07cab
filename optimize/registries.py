"""Every registry, in one module that imports none of their members.

A member module registers itself with a decorator (`@STAGES.register("prune")`) and its package's
`__init__` imports it; a registry imports that package on its first lookup. So members import
this module, never their own package, and no import cycle runs between a package and its members.
"""

from optimize.registry import Registry

STAGES: Registry = Registry("stage", members="optimize.stages")
RUNTIMES: Registry = Registry("runtime", members="optimize.runtimes")
MODEL_SOURCES: Registry = Registry("model source", members="optimize.models")
DATA_SOURCES: Registry = Registry("data source", members="optimize.data")
QUANTIZERS: Registry = Registry("quantizer", members="optimize.quantization")
