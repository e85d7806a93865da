#!/bin/sh
# Build-time install steps shared by the images in docker/, run with parts of the build context bind-mounted
# at /ctx (requirements/ and this script, or the whole context). One place for what the Dockerfiles repeat.
#   install.sh torch VARIANT             torch as pinned in requirements/constraints.txt, alone and first:
#                                        cpu from the PyTorch CPU index (PyPI's Linux wheel is the CUDA build),
#                                        cuda from PyPI (CUDA 13.0); checked after install (docs/install.md)
#   install.sh requirements VARIANT SET...
#                                        pins of requirements/SET.txt (no build isolation); with VARIANT=cuda, onnxruntime is then
#                                        swapped for requirements/gpu.txt (the two cannot share an environment:
#                                        docs/install.md) and the CUDA wheels' libraries are registered
#                                        with the dynamic loader
#   install.sh project                   ecg-k itself (no dependencies; the wheel carries the migrations), the
#                                        ecgk user (uid 10001) and the volume mount points it owns
set -eu

CTX=${CTX:-/ctx}  # where the Dockerfile mounted the build context (or the parts of it needed)
REQ="$CTX/requirements"
PIP="python -m pip install -c $REQ/constraints.txt"

check_variant() {
  case "$1" in
    cpu | cuda) ;;
    *) echo "install.sh: VARIANT must be cpu or cuda, not '$1'" >&2; exit 2 ;;
  esac
}

step=${1:?usage: install.sh torch VARIANT | requirements VARIANT SET... | project}
shift
case "$step" in
  torch)
    check_variant "${1:?VARIANT}"
    if [ "$1" = cpu ]; then index=https://download.pytorch.org/whl/cpu; else index=https://pypi.org/simple; fi
    $PIP --index-url "$index" torch
    python - "$1" <<'CHECK'
import sys
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda)
if (torch.version.cuda is None) != (sys.argv[1] == "cpu"):
    sys.exit(f"torch {torch.__version__} is not the {sys.argv[1]} build")
CHECK
    ;;
  requirements)
    variant=${1:?VARIANT}
    check_variant "$variant"
    shift
    [ "$#" -gt 0 ] || { echo "install.sh: name at least one requirement set" >&2; exit 2; }
    files=""
    for name in "$@"; do files="$files -r $REQ/$name.txt"; done
    # Without build isolation: torchsort (an sdist) must compile against the torch installed first.
    # shellcheck disable=SC2086  # one word per option
    $PIP --no-build-isolation $files
    if [ "$variant" = cuda ]; then
      python -m pip uninstall -y onnxruntime
      $PIP -r "$REQ/gpu.txt"
      site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
      printf '%s\n' "$site/nvidia/cu13/lib" "$site/nvidia/cudnn/lib" > /etc/ld.so.conf.d/ecgk-cuda-wheels.conf
      ldconfig
    fi
    python -m pip check
    ;;
  project)
    python -m pip install --no-deps --no-build-isolation "$CTX"
    useradd --create-home --uid 10001 ecgk
    mkdir -p /data /models /ecg-store
    chown ecgk:ecgk /data /models /ecg-store
    ;;
  *)
    echo "install.sh: unknown step '$step'" >&2
    exit 2
    ;;
esac
