FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY migrations ./migrations
RUN pip install --no-cache-dir . && useradd --system relay
USER relay
EXPOSE 8080
CMD ["relay", "serve"]
