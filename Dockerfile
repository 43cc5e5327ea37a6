# Gateway image. Not built in CI (no Docker engine there); `make test` is the tested path.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY anxin ./anxin
COPY gateway ./gateway
COPY device_profiles ./device_profiles
COPY demo ./demo
RUN pip install --no-cache-dir -e .
ENV ANXIN_PROFILES_DIR=/app/device_profiles
EXPOSE 8080
CMD ["anxin", "gateway"]
