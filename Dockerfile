# The pgolf environment on CUDA: PyTorch from the base image, the project and
# DVC installed from this repository's pyproject.toml.
#
#   docker build -t pgolf .
#   docker run --gpus all --ipc=host -v "$PWD":/workspace pgolf            # dvc repro
#   docker run --gpus all --ipc=host -v "$PWD":/workspace pgolf dvc exp run -S profile=smoke
#   docker run --rm -v "$PWD":/workspace pgolf dvc exp run -S profile=smoke   # CPU only: no GPU needed
#
# The image holds the environment, not the workspace: mount a git checkout of
# this repository at /workspace. It is the DVC workspace (git history,
# .dvc/cache, data/, runs/, metrics/, dvc.lock all stay on the host), and it is
# the code that runs: the package is installed in editable mode from
# /workspace, so the mounted sources are both what DVC hashes and what executes.
# Rebuild the image when pyproject.toml's dependencies change.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

# git: DVC needs it. gcc + libc headers: Triton (torch.compile) builds small C
# launchers at run time, and the runtime image has no compiler. lrzip and brotli:
# the command-line compressors the frontier records' artifact formats use.
# safe.directory: the mounted checkout belongs to a host user. The identity is a
# fallback for the commits `dvc exp run` makes under refs/exps; the checkout's
# own .git/config (user.name, user.email) takes precedence.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git gcc libc6-dev lrzip brotli \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*' \
    && git config --system user.name "pgolf container" \
    && git config --system user.email "pgolf@localhost"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1

WORKDIR /workspace

# What pip needs to install the project (.dockerignore lets nothing else in).
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY stages ./stages

# The dependency set CI installs (pyproject.toml's `dvc` extra; CI's `test`
# extra adds only the test tools), with torch pinned to the base image's CUDA
# build so pip can never replace it.
RUN python -c "import torch; print(f'torch=={torch.__version__}')" > /tmp/torch-constraint.txt \
    && python -m pip install --constraint /tmp/torch-constraint.txt -e '.[dvc,brotli]' \
    && python -c "import torch; assert torch.version.cuda, 'torch lost its CUDA build'" \
    && pgolf --help > /dev/null \
    && dvc --version \
    && lrzip --version \
    && brotli --version

# The brotli Python binding, for compressors that call it in-process.
RUN python -m pip install --constraint /tmp/torch-constraint.txt brotli \
    && python -c "import brotli; assert brotli.decompress(brotli.compress(b'pgolf')) == b'pgolf'"

# FlashAttention-3 (Hopper; the record used it). It is not on PyPI; PyTorch's own
# wheel index has builds per CUDA version, at https://download.pytorch.org/whl/cuXYZ/flash-attn-3/
# (cuXYZ from the base image's torch: cu128 here). When that page holds a wheel
# matching this image's torch, CUDA and Python it is installed, with no
# dependencies and torch held, and it must import; when it holds none, the image
# runs PyTorch's SDPA kernels (`model.attention_backend: auto` picks FA3 when it
# imports). Another page of `flash_attn_3` wheels (e.g. a community index listed in
# README.md) replaces PyTorch's with
#   docker build --build-arg FLASH_ATTN_3_FIND_LINKS=URL -t pgolf .
# and `--build-arg FLASH_ATTN_3_FIND_LINKS=none` skips FlashAttention-3.
ARG FLASH_ATTN_3_FIND_LINKS=""
RUN links="$FLASH_ATTN_3_FIND_LINKS"; \
    if [ -z "$links" ]; then \
        links="https://download.pytorch.org/whl/$(python -c "import torch; print('cu' + torch.version.cuda.replace('.', ''))")/flash-attn-3/"; \
    fi; \
    if [ "$links" = none ]; then \
        echo "FlashAttention-3 skipped (FLASH_ATTN_3_FIND_LINKS=none)"; \
    elif python -m pip install --constraint /tmp/torch-constraint.txt --no-deps --no-index --find-links "$links" flash_attn_3 ; then \
        python -c "import flash_attn_interface; from pipeline.model.attention import fa3_available; assert fa3_available()"; \
    else \
        echo "no flash_attn_3 wheel for this image's torch/CUDA/Python at $links: using PyTorch's SDPA kernels"; \
    fi

# A non-root user. uid 1000 owns the mount on most single-user hosts; for
# another owner pass `--user "$(id -u):$(id -g)"` (HOME stays writable).
RUN useradd --create-home --uid 1000 pgolf \
    && chmod 1777 /home/pgolf \
    && chown pgolf /workspace
ENV HOME=/home/pgolf \
    USER=pgolf
USER pgolf

VOLUME ["/workspace"]
CMD ["dvc", "repro"]
