"""Print KEY=VALUE lines CMake needs to build against the torch of this interpreter."""

import glob
import os
import shutil

import torch
import torch.utils

print(f"TORCH_CMAKE_PREFIX={torch.utils.cmake_prefix_path}")
print(f"TORCH_VERSION={torch.__version__}")
print(f"TORCH_CUDA={1 if torch.version.cuda else 0}")
lib = os.path.join(os.path.dirname(torch.__file__), "lib")
print(f"TORCH_PYTHON_LIBRARY={os.path.join(lib, 'libtorch_python.so')}")

# nvrtc from the pip wheels (nvidia-cuda-nvrtc) that a CUDA build of torch depends on.
site = os.path.dirname(os.path.dirname(torch.__file__))
candidates = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*")))
candidates += sorted(glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
plain = [c for c in candidates if "builtins" not in c and ".alt." not in c]
if plain:
    print(f"NVRTC_LIBRARY={plain[0]}")
# A CUDA root holding the runtime headers: the user's, the system toolkit, or the pip nvidia wheels.
nvcc = shutil.which("nvcc")
roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
if nvcc:
    roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
roots += sorted(glob.glob(os.path.join(site, "nvidia", "cu*")))
for root in roots:
    if root and os.path.isfile(os.path.join(root, "include", "cuda_runtime.h")):
        print(f"CUDA_HOME={root}")
        break
