# article-qa HTTP service (CPU only).
#
#   docker build -t article-qa .
#   docker run -p 8000:8000 -e QA_API_TOKEN="$(python -c 'import secrets; print(secrets.token_urlsafe(32))')" article-qa
#
# Reading (/ask, /ask/batch, /documents) is open. Writing (POST and DELETE /documents) needs
# QA_API_TOKEN, given at run time as above and never baked into the image, and clients sending
# "Authorization: Bearer <token>"; without it the server (bound to 0.0.0.0) refuses writes with 403.
# Added articles live in /app/seeds and the index in /app/index: mount volumes there to keep them.
# Several replicas on one Milvus store (QA_STORE=milvus): deploy/ (docker compose, Kubernetes).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    QA_CORPUS_DIR=/app/seeds \
    QA_INDEX_DIR=/app/index \
    QA_ONNX_CACHE_DIR=/app/onnx

WORKDIR /app

# CPU torch first, from PyTorch's CPU index: a bare `torch` from PyPI would pull the multi-GB CUDA build.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# The dependencies alone, in their own layer: editing the source does not reinstall them. With the
# `milvus` extra (pymilvus), so that the same image runs with QA_STORE=milvus against a Milvus server
# (deploy/); the default store stays local.
COPY pyproject.toml requirements.lock README.md* ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['milvus']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c requirements.lock \
    && rm /tmp/requirements.txt

# The package itself (with the packaged reader model, if one was trained into qa/models/reader).
COPY qa/ qa/
RUN pip install --no-cache-dir ".[milvus]" -c requirements.lock \
    && rm -rf build qa ./*.egg-info

# A non-root user (10001, named app) that owns what the service writes: the articles and the index.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app/index /app/seeds /app/onnx \
    && chown 10001:10001 /app/index /app/seeds /app/onnx
COPY --chown=10001:10001 seeds/ seeds/
COPY --chown=10001:10001 index/README.md index/
USER 10001:10001

# The seed index, built now, and one question answered: that exports the models that run on ONNX
# Runtime (the embedder; the reader too on CPUs without native bf16) once, into /app/onnx, so the
# container is ready seconds after it starts.
RUN qa index build seeds/ \
    && ask --json "When was the second Istanbul round?" > /dev/null

EXPOSE 8000
# Liveness only (the slim image has no curl); GET /readyz says when models and index are loaded.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["qa", "serve", "--host", "0.0.0.0"]
