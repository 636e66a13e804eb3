"""awqfmt: check, convert and understand packed low-bit LLM checkpoints (AWQ, GPTQ, compressed-tensors).

The core (spec, packing, reader, check, convert) needs only numpy and safetensors; the GPU kernels need CuPy.
"""

__version__ = "0.1.0"
