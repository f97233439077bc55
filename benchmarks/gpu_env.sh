# Source this on a GPU machine of the device tool: the wheels in .whl/ (norse, nir,
# nirtorch) go to /tmp/site, the repository's folders are mapped into the dvsapp
# namespace under /tmp/pkg (as an installed wheel would lay them out), NVLink
# multicast stays off, and Python runs unbuffered.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -d "$repo/.whl" ] && [ ! -d /tmp/site/norse ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$repo"/.whl/*.whl
fi
mkdir -p /tmp/pkg/dvsapp
for d in core app recordings; do ln -sfn "$repo/$d" "/tmp/pkg/dvsapp/$d"; done
export PYTHONPATH="/tmp/site:/tmp/pkg:$repo" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
