# The pgolf environment on CUDA: PyTorch from the base image, the project and
# DVC installed from this repository's pyproject.toml.
#
#   docker build -t pgolf .
#   docker run --gpus all --ipc=host -v "$PWD":/workspace pgolf            # dvc repro
#   docker run --gpus all --ipc=host -v "$PWD":/workspace pgolf dvc exp run -S profile=smoke
#
# The image holds the environment, not the workspace: mount a git checkout of
# this repository at /workspace. It is the DVC workspace (git history,
# .dvc/cache, data/, runs/, metrics/, dvc.lock all stay on the host), and it is
# the code that runs: the package is installed in editable mode from
# /workspace, so the mounted sources are both what DVC hashes and what executes.
# Rebuild the image when pyproject.toml's dependencies change.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

# git: DVC needs it. gcc + libc headers: Triton (torch.compile) builds small C
# launchers at run time, and the runtime image has no compiler.
# safe.directory: the mounted checkout belongs to a host user. The identity is a
# fallback for the commits `dvc exp run` makes under refs/exps; the checkout's
# own .git/config (user.name, user.email) takes precedence.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git gcc libc6-dev lrzip \
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
    && dvc --version

# FlashAttention-3 (Hopper), optional: it is not on PyPI. Pass a pip
# --find-links page of prebuilt `flash_attn_3` wheels built for the base image's
# CUDA and torch, e.g. one of the community indexes listed in README.md, as
#   docker build --build-arg FLASH_ATTN_3_FIND_LINKS=URL -t pgolf .
# and `model.attention_backend: auto` uses it on the GPU. Without it the image
# runs PyTorch's SDPA kernels. --no-deps and the constraint keep torch as is.
ARG FLASH_ATTN_3_FIND_LINKS=""
RUN if [ -n "$FLASH_ATTN_3_FIND_LINKS" ]; then \
        python -m pip install --constraint /tmp/torch-constraint.txt --no-deps --find-links "$FLASH_ATTN_3_FIND_LINKS" flash_attn_3 \
        && python -c "import flash_attn_interface; from pipeline.model.attention import fa3_available; assert fa3_available()"; \
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
