# syntax=docker/dockerfile:1.22.0@sha256:4a43a54dd1fedceb30ba47e76cfcf2b47304f4161c0caeac2db1c61804ea3c91
# The line above pins the Dockerfile frontend, the program that reads this file, by digest (a
# tag can move; `bake check` refuses a frontend or an image without one, docs/image.md). 1.10 or
# newer is needed for `--mount=type=secret,env=`. The digest is the one public pins of
# docker/dockerfile:1.22.0 agree on (not checked against Docker Hub when it was written): BuildKit
# fetches by digest and fails if the registry has no such manifest. To move it, take the digest
# `docker buildx imagetools inspect docker/dockerfile:1.x.y` prints.
# ComfyUI worker for RTX 5090 (sm_120, CUDA 12.8) on RunPod serverless, built from the locks only.
# Every step that does real work is a `python -m bake` command, the same commands the tests run.
# Build: see docs/image.md. WITH_MODELS=0 leaves the image-placement models out (volume deploys).

ARG WITH_MODELS=1

# -- lockcheck: the three locks are complete and consistent, before anything is installed ---
# An unresolved or broken lock (an entry without its pin, a model dest outside models/, ...)
# fails the build here, seconds after the base image is pulled and with the commands that fix
# it, not after the CUDA and torch environment install. It needs only Python, PyYAML and
# packaging, taken from the base's own Ubuntu release.
FROM nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04@sha256:81d4dd36435f4ccf0aafb111c6b09182084f0a3ff044ffa5b74bbeb7c5a5fd33 AS lockcheck
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Every apt install goes through scripts/apt-install, bind-mounted with apt.lock.yaml so neither
# stays in a layer: Ubuntu's packages come from the archive snapshot the lock records, packages
# of NVIDIA's repository (no snapshots) at the versions it pins; apt's lists, caches and logs
# are removed in the same step (docs/image.md, "Reproducible builds").
RUN --mount=type=bind,source=scripts/apt-install,target=/tmp/apt/apt-install \
    --mount=type=bind,source=apt.lock.yaml,target=/tmp/apt/apt.lock.yaml \
    sh /tmp/apt/apt-install /tmp/apt/apt.lock.yaml \
        python3 python-is-python3 python3-yaml python3-packaging
# The Dockerfile too: the check refuses a frontend or base image that is not pinned by digest.
COPY nodes.lock.yaml models.lock.yaml requirements.lock apt.lock.yaml node-classes.yaml \
    Dockerfile /opt/bake/
COPY bake /opt/bake/bake
WORKDIR /opt/bake
# The marker is empty, so its checksum is the same after every check: a lock or code change
# re-runs this stage but never invalidates the environment install that waits for it.
RUN python -m bake check --strict && : > /opt/bake/locks-checked

# -- python: the locked interpreter environment ---------------------------------------------
# The devel base carries nvcc >= 12.8, which SageAttention needs to emit sm_120 code.
FROM nvidia/cuda:12.8.0-cudnn-devel-ubuntu24.04@sha256:81d4dd36435f4ccf0aafb111c6b09182084f0a3ff044ffa5b74bbeb7c5a5fd33 AS python
# BuildKit builds only the stages a target needs: this copy makes every stage wait for the
# lock check, and it comes first so that nothing is installed before it passed.
COPY --from=lockcheck /opt/bake/locks-checked /opt/bake/locks-checked

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# From the Ubuntu archive snapshot of apt.lock.yaml (see the lockcheck stage).
RUN --mount=type=bind,source=scripts/apt-install,target=/tmp/apt/apt-install \
    --mount=type=bind,source=apt.lock.yaml,target=/tmp/apt/apt.lock.yaml \
    sh /tmp/apt/apt-install /tmp/apt/apt.lock.yaml \
        python3.12 python3.12-venv python3.12-dev git build-essential ninja-build ca-certificates

# Only the lock is copied here, so a code change never reinstalls the environment. With
# --require-hashes pip refuses any file whose sha256 is not in the lock, and --no-deps keeps it
# from resolving anything the lock does not name. pip byte-compiles what it installs; with
# SOURCE_DATE_EPOCH set (to anything) Python writes checked-hash .pyc files, which hold their
# source's hash instead of its mtime (the time of this build), so they are the same in every
# build and stay valid when the layer's timestamps are rewritten.
RUN SOURCE_DATE_EPOCH=0 python3.12 -m venv /opt/venv
COPY requirements.lock /opt/bake/requirements.lock
RUN SOURCE_DATE_EPOCH=0 pip install --no-cache-dir --no-deps --require-hashes -r /opt/bake/requirements.lock

# -- sage: SageAttention built from its locked rev for sm_120 only ---------------------------
FROM python AS sage
# SHELL is inherited from the parent stage; restated so linters see bash here too.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# setup.py reads the arch list literally ("12.0"; "sm_120" is silently skipped); the lock's
# entry sets the same value, this makes it visible where the build happens.
ENV TORCH_CUDA_ARCH_LIST="12.0" \
    CUDA_HOME=/usr/local/cuda
# Parallelism follows the CPU count (EXT_PARALLEL extensions at once, MAX_JOBS nvcc jobs each);
# each nvcc job can take GBs, so a builder short of memory passes smaller values as build args.
ARG MAX_JOBS
ARG EXT_PARALLEL
COPY nodes.lock.yaml /opt/bake/nodes.lock.yaml
COPY bake /opt/bake/bake
WORKDIR /opt/bake
RUN python -m bake build sageattention --out /wheels
# A wheel that imports but carries no sm_120 cubin would only fail on the GPU: fail here instead.
RUN mkdir /tmp/sage \
    && python -m zipfile -e /wheels/sageattention-*.whl /tmp/sage \
    && find /tmp/sage -name '*.so' | sort > /tmp/modules \
    && if [ ! -s /tmp/modules ]; then echo "no extension module in the wheel" >&2; exit 1; fi \
    && while read -r so; do \
        archs="$(cuobjdump --list-elf "$so" | grep -o 'sm_[0-9]*[a-z]*' | sort -u | xargs)"; \
        echo "${so#/tmp/sage/}: ${archs:-no cubins}"; \
        case " $archs " in \
            *" sm_120 "* | *" sm_120a "*) ;; \
            *) echo "${so#/tmp/sage/}: no sm_120 code, the build missed its target" >&2; exit 1 ;; \
        esac; \
    done < /tmp/modules \
    && rm -rf /tmp/sage /tmp/modules

# -- comfyui: ComfyUI and the custom nodes at their locked commits, trees verified -----------
# The models lock names the model files a node keeps in its own folder (RIFE): install leaves
# exactly the commits' files there, and those.
FROM python AS comfyui
COPY nodes.lock.yaml models.lock.yaml /opt/bake/
COPY bake /opt/bake/bake
WORKDIR /opt/bake
RUN python -m bake nodes install --comfyui-dir /comfyui
# Byte-code compiled at build time, since ComfyUI cannot write its own tree at run time (it runs
# as `comfy`, see the runtime stage): without it every cold start compiles every module again.
# checked-hash .pyc files record their source's hash, not an mtime (which layer copies reset),
# so they are reproducible and used only while they match their source. go-w: only root may
# write the tree. Order: nodes install -> this -> build-time first start -> the chown below.
RUN python -m compileall -q -j 0 --invalidation-mode checked-hash /comfyui \
    && chmod -R go-w /comfyui

# -- models: one stage, hence one image layer, per image-placement model ---------------------
# A changed model re-pushes only its own layer. The layer holds the file alone, timestamps reset,
# so re-fetching an unchanged file (after a code change busts this cache) yields the same layer
# digest, which the registry and RunPod hosts already have. Credentials come only from BuildKit
# secrets (Hugging Face, and R2 as S3), each optional: public Hugging Face files need none. Every
# stage mounts the same set so that moving a model between sources is a lock edit only.
FROM python AS fetcher
# Stamps (file identity -> hash) would change with every fetch and go stale at the first boot
# anyway: keep them out of the layer, with the per-file lock files.
ENV BAKE_STAMP_DIR=/tmp/bake-stamps
COPY models.lock.yaml /opt/bake/models.lock.yaml
COPY bake /opt/bake/bake
WORKDIR /opt/bake

FROM fetcher AS model-wan-high
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name wan2.2_i2v_high_noise_14B_fp8_scaled \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-wan-low
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name wan2.2_i2v_low_noise_14B_fp8_scaled \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-umt5
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name umt5_xxl_fp8_e4m3fn_scaled \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-vae
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name wan_2.1_vae \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-lora-high
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-lora-low
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

FROM fetcher AS model-rife
RUN --mount=type=secret,id=hf_token,env=HF_TOKEN \
    --mount=type=secret,id=aws_access_key_id,env=AWS_ACCESS_KEY_ID \
    --mount=type=secret,id=aws_secret_access_key,env=AWS_SECRET_ACCESS_KEY \
    --mount=type=secret,id=aws_endpoint_url,env=AWS_ENDPOINT_URL \
    python -m bake models fetch --comfyui-dir /comfyui --placement image \
        --name rife47 \
    && find /comfyui -name '.*.lock' -delete -o -exec touch -h -d @0 {} +

# -- runtime: CUDA runtime base plus what Triton compiles with at first use ------------------
# Triton builds small C launchers at run time: it needs gcc and Python.h, not nvcc (its wheel
# ships ptxas), and links them with -lcuda. The driver mounts only libcuda.so.1 into the
# container, so the link stub (cuda-driver-dev) sits on LIBRARY_PATH as a fallback; the loaded
# library is still the host driver's. Several GB below the devel base.
FROM nvidia/cuda:12.8.0-cudnn-runtime-ubuntu24.04@sha256:c40d1065da90274969f9faa7fe1a7fcd1c374d5783482eec09ee5b516746088f AS runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LIBRARY_PATH=/usr/local/cuda/lib64/stubs

# cuda-driver-dev-12-8 comes from NVIDIA's repository: installed at the version apt.lock.yaml pins.
RUN --mount=type=bind,source=scripts/apt-install,target=/tmp/apt/apt-install \
    --mount=type=bind,source=apt.lock.yaml,target=/tmp/apt/apt.lock.yaml \
    sh /tmp/apt/apt-install /tmp/apt/apt.lock.yaml \
        python3.12 python3.12-dev python3-packaging gcc libc6-dev cuda-driver-dev-12-8 ffmpeg \
        ca-certificates

# The unprivileged user ComfyUI runs as (the worker, root, switches to it: COMFYUI_USER below).
# Fixed ids, so files on a volume mean the same user in every build. Its home holds the Triton,
# torch and XDG caches (SageAttention's Triton kernels compile at first use).
# The shadow entry's "last changed" day would be the day of the build: emptied (no password
# aging; the account has no password and no login shell anyway).
RUN groupadd --system --gid 10001 comfy \
    && useradd --system --no-log-init --uid 10001 --gid comfy \
        --create-home --home-dir /home/comfy --shell /usr/sbin/nologin comfy \
    && sed -i 's/^\(comfy:[^:]*:\)[0-9]*:/\1:/' /etc/shadow \
    && rm -f /etc/shadow- /etc/gshadow- /etc/passwd- /etc/group- /etc/subuid- /etc/subgid-

# --link: these big layers do not depend on the apt layer below, so an apt change (a moved
# snapshot in apt.lock.yaml) neither rebuilds nor re-pushes them.
COPY --link --from=python /opt/venv /opt/venv
# The wheel was built two stages up from the locked rev; nothing is resolved. A bind mount, not a
# COPY: a copied wheel would stay in its own layer (and in every pull) after an `rm`.
RUN --mount=type=bind,from=sage,source=/wheels,target=/wheels \
    SOURCE_DATE_EPOCH=0 pip install --no-cache-dir --no-deps --no-index /wheels/sageattention-*.whl

COPY --link --from=comfyui /comfyui /comfyui

# Our own code last: it changes most often. Installed without dependencies, since the lock
# already holds every one of them.
# The Dockerfile and apt.lock.yaml go along for `python -m bake provenance` (base image digests,
# the apt snapshot).
COPY requirements.lock nodes.lock.yaml models.lock.yaml apt.lock.yaml node-classes.yaml \
    Dockerfile pyproject.toml README.md /opt/bake/
COPY bake /opt/bake/bake
COPY worker /opt/bake/worker
# Also the working directory at run time: `python -m worker` puts it first on sys.path, and
# ComfyUI's root (app, utils, server, ...) could shadow the worker's imports. The worker starts
# ComfyUI in /comfyui itself.
WORKDIR /opt/bake
# The code runs from /opt/bake (the working directory): compiled here with checked hashes, and
# the build's own runs of it write no byte-code (a timestamp .pyc holds the build's mtimes).
ARG PYTHONDONTWRITEBYTECODE=1
RUN SOURCE_DATE_EPOCH=0 pip install --no-cache-dir --no-deps --no-index --no-build-isolation /opt/bake \
    && rm -rf /opt/bake/build /opt/bake/*.egg-info \
    && python -m bake check --strict \
    && python -m compileall -q --invalidation-mode checked-hash /opt/bake/bake /opt/bake/worker

# What ComfyUI may write, and nothing else: its upload, output, preview and settings folders,
# and the one file a locked node rewrites at every start (RES4LYF's res4lyf.config.json: JSON
# it reads, never code; RES4LYF fails to import when it cannot rewrite it). ComfyUI's code,
# custom_nodes/ and the models stay root's, read-only to `comfy`. After the build-time first
# start, which creates these as root (the worker hands the folders over at boot too).
RUN mkdir -p /comfyui/input /comfyui/output /comfyui/temp /comfyui/user \
    && chown -R comfy:comfy /comfyui/input /comfyui/output /comfyui/temp /comfyui/user \
    && if [ -d /comfyui/custom_nodes/RES4LYF ]; then \
        cfg=/comfyui/custom_nodes/RES4LYF/res4lyf.config.json; \
        if [ ! -e "$cfg" ]; then echo '{}' > "$cfg"; fi; \
        chown comfy:comfy "$cfg"; \
    fi

# Nothing may download or install at run time: what a node needs is baked and pinned.
ENV BAKE_ROOT=/opt/bake \
    COMFYUI_DIR=/comfyui \
    COMFYUI_USER=comfy \
    HF_HUB_OFFLINE=1 \
    PIP_NO_INDEX=1 \
    UV_OFFLINE=1

ENTRYPOINT ["/opt/bake/worker/start.sh"]

# -- the image: models copied in last with --link, so each stays its own layer --------------
# --link layers do not depend on the layers below: rebuilding the code never re-pushes them.
# WITH_MODELS=0 leaves out what a network volume can serve (dest under models/); a checkpoint a
# node reads from its own folder (RIFE) is small and always baked.
FROM runtime AS models-0
COPY --link --from=model-rife /comfyui/ /comfyui/

FROM models-0 AS models-1
COPY --link --from=model-wan-high /comfyui/ /comfyui/
COPY --link --from=model-wan-low /comfyui/ /comfyui/
COPY --link --from=model-umt5 /comfyui/ /comfyui/
COPY --link --from=model-vae /comfyui/ /comfyui/
COPY --link --from=model-lora-high /comfyui/ /comfyui/
COPY --link --from=model-lora-low /comfyui/ /comfyui/

# The stage is chosen by the build arg; both candidates are stages of this file, not images.
# hadolint ignore=DL3006
FROM models-${WITH_MODELS} AS image
ARG WITH_MODELS
# Stamps of this check would hold this layer's inodes: keep them out of /comfyui (an ARG is set
# for the RUN below only, never in the image's environment).
ARG BAKE_STAMP_DIR=/tmp/bake-stamps
ARG PYTHONDONTWRITEBYTECODE=1
# The repository commit the image is built from (build.yml passes github.sha), recorded in the
# provenance document; empty in a local build unless given with --build-arg. A new commit re-runs
# the step below even when nothing else changed: the record must name it.
ARG BAKE_COMMIT=
# The image checks what it holds, last, with everything in place: ComfyUI starts once (every
# node must import, every class it registers must be in node-classes.yaml, and the list stays
# in the image; the configs nodes write at first start stay in the image), then ComfyUI's
# tree and every node folder must hold exactly their commits (plus model-lock files, the
# build's byte-code and ignored data), then every file of the Python environment must be one
# its locked wheels' RECORDs hash (checked by the system's Python, from outside the venv, after
# the start that ran every node's code), then every baked model is hashed against the lock.
# Without models (WITH_MODELS=0) the image-placement models under models/ are absent by design.
# Each RECORD of the environment must also be the one the `runtime` stage installed, mounted
# read-only below (a stage the start cannot write): code that ran at the start could have
# rewritten a RECORD together with the files it hashes.
# Last, the provenance record: every input of this image with its hash, the SageAttention wheel
# that was installed included (docs/image.md, "Provenance"); the worker reports its sha256.
RUN --mount=type=bind,from=sage,source=/wheels,target=/wheels \
    --mount=type=bind,from=runtime,source=/opt/venv,target=/opt/venv-installed \
    python -m bake nodes smoke --comfyui-dir /comfyui \
        --record /opt/bake/node-classes.installed.json \
    && python -m bake nodes verify --comfyui-dir /comfyui \
    && /usr/bin/python3.12 -E -s -B -m bake python verify --prefix /opt/venv \
        --reference /opt/venv-installed \
    && if [ "$WITH_MODELS" = 1 ]; then \
        python -m bake models verify --comfyui-dir /comfyui --mode full --placement image; \
    fi \
    && rm -rf "$BAKE_STAMP_DIR" \
    && python -m bake provenance --out /opt/bake/provenance.json --comfyui-dir /comfyui \
        --sage-wheels /wheels
