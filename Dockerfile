# One image for every vidrec process: model server (`vidrec serve`), drift monitor
# (`vidrec monitor run`), ModelRollout operator (`vidrec operator`) and the training
# pipeline (`vidrec pipeline run`); the chart picks the command. Dependencies come from
# uv.lock, except torch, which comes from PyTorch's CPU-only index (no CUDA libraries).
ARG PYTHON=3.11
FROM python:${PYTHON}-slim-bookworm AS build
ARG UV_VERSION=0.13.9
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never \
    VIRTUAL_ENV=/opt/vidrec PATH=/opt/vidrec/bin:$PATH
RUN pip install --no-cache-dir uv==${UV_VERSION} && python -m venv /opt/vidrec
WORKDIR /src
COPY pyproject.toml uv.lock ./
# the lock's versions, minus torch and the CUDA wheels it pulls in on PyPI
RUN uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/all.txt \
 && grep -vE '^(torch|nvidia-|triton)' /tmp/all.txt > /tmp/req.txt \
 && TORCH=$(grep -oE '^torch==[0-9.]+' /tmp/all.txt) \
 && uv pip install --no-deps -r /tmp/req.txt \
 && uv pip install --no-deps --index-url https://download.pytorch.org/whl/cpu "${TORCH}+cpu"
COPY README.md ./
COPY src ./src
COPY pipelines ./pipelines
RUN uv pip install --no-deps . && cp -r pipelines /opt/vidrec/pipelines

FROM python:${PYTHON}-slim-bookworm
# libgomp: LightGBM and faiss; no compilers, no package caches
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /home/vidrec vidrec
COPY --from=build /opt/vidrec /opt/vidrec
ENV PATH=/opt/vidrec/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/vidrec \
    VIDREC_PIPELINES=/opt/vidrec/pipelines
USER 10001
WORKDIR /home/vidrec
EXPOSE 8080 9201 9202
# the model server's liveness (the chart sets each component's own probes)
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"
ENTRYPOINT ["vidrec"]
CMD ["serve", "--help"]
