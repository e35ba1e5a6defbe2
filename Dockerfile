# One image for every MedStream service; docker-compose.yml picks the entry point.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
COPY infra ./infra
COPY models ./models
RUN pip install .
# The registry sits beside the code in a checkout; in the image it is /app/models.
ENV MEDSTREAM_MODEL_REGISTRY=/app/models
RUN useradd --system --uid 10001 medstream
USER medstream
CMD ["medstream", "--help"]
