# One image for the whole kit: the mock HostedAI server (the default command) and the Harpoon service.
#
#   docker build -t hostedai-testkit:local .
#   docker run --rm -p 127.0.0.1:8000:8000 hostedai-testkit:local                       # the mock
#   docker run --rm -p 127.0.0.1:8080:8080 -e HEALTH_PORT=8080 \
#     -e HOSTED_AI_BASE_URL=http://host.docker.internal:8000 -e HOSTED_AI_API_KEY=dev-key \
#     hostedai-testkit:local harpoon-service --config configs/harpoon.compose.yaml        # Harpoon
#   docker run --rm hostedai-testkit:local hostedai-harness verify                       # every suite
#
# `pip install .` brings everything the three commands run (schemathesis, hypothesis, locust included).
# docker-compose.yml and deploy/k8s/ run both; tests/deploy/ checks that they agree with this file.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The wheel force-includes contracts/ and configs/models.yaml (pyproject.toml), so the runtime stage
# needs nothing from the source tree but the service configs.
COPY pyproject.toml README.md ./
COPY contracts/ contracts/
COPY configs/ configs/
COPY mock_server/ mock_server/
COPY harness/ harness/
COPY loadtests/ loadtests/
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTH_PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
# docker-compose.tls.yml mounts a named volume here for the mock's CA (--tls-self-signed): a new volume
# takes this directory's owner, so the non-root server can write its ca.pem there.
RUN install -d -o 10001 -g 10001 /var/lib/hostedai-ca
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# `harpoon-service --config configs/…` resolves from here; `models: models.yaml` sits beside each config.
COPY configs/ configs/
USER 10001:10001
EXPOSE 8000 8080
# slim has no curl. HEALTH_PORT is 8000 for the mock; set it to 8080 when the image runs harpoon-service.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('HEALTH_PORT', '8000'), timeout=4)"
CMD ["hostedai-mock", "--host", "0.0.0.0", "--port", "8000"]
