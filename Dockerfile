# titan-execution: one image for the primary and the backup (docker-compose.prod.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/titan titan \
    && mkdir -p /var/lib/titan && chown titan /var/lib/titan
USER titan
EXPOSE 3002
HEALTHCHECK --interval=5s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:3002/health', timeout=2)" || exit 1
ENTRYPOINT ["titan-exec"]
CMD ["run", "--config", "/etc/titan/titan.toml"]
