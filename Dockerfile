# mmcrl app image: `docker build -t mmcrl . && docker run -p 8501:8501 -v mmcrl-workspace:/workspace mmcrl`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MMCRL_HOME=/workspace \
    OMP_NUM_THREADS=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl graphviz \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt

RUN useradd --create-home --uid 1000 mmcrl \
    && mkdir -p /workspace \
    && chown mmcrl:mmcrl /workspace
COPY --chown=mmcrl:mmcrl . /app

USER mmcrl
VOLUME ["/workspace"]
EXPOSE 8501

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl --fail --silent http://localhost:8501/_stcore/health || exit 1

CMD ["sh", "-c", "python -m mmcrl_core.first_run && exec streamlit run app.py --server.port 8501 --server.address 0.0.0.0"]
