# BlueHats bot. Cannot be built on the development machines (no Docker engine):
# keep it in step with the README and with `bluehats-bot run`, which the tests run
# (tests/unit/test_packaging.py reads this file).
#
#   docker build -t bluehats-bot .
#   docker run -d --name bluehats --restart unless-stopped \
#       -v bluehats-data:/data -e BLUEHATS_MATRIX_PASSWORD=... bluehats-bot
#
# /data holds config.yaml, the database, the saved session and the encryption
# keys: always mount a volume there. Without one (e.g. `--rm` alone) every start
# is a new device and the bot loses its keys.

# -- web: the `dsfr` theme's files (npm @gouvfr/dsfr, pinned by the lock file), only the
#    part the pages use: stylesheets, their fonts and icons, favicons, the licence
#    (bot/web/assets.py lists them; tests/unit/web/test_web_assets.py replays this cp).
#    The package's preinstall wants the accepted terms of use (.dsfr.yml) where npm runs.
FROM node:22-slim AS web
WORKDIR /assets
COPY bot/web/assets/package.json bot/web/assets/package-lock.json bot/web/assets/.dsfr.yml ./
RUN npm ci --no-audit --no-fund --loglevel=error \
    && mkdir /dsfr \
    && cp node_modules/@gouvfr/dsfr/LICENSE.md /dsfr/ \
    && cd node_modules/@gouvfr/dsfr/dist \
    && cp -r --parents dsfr.min.css utility/icons/icons.min.css fonts icons favicon /dsfr/

# -- build: wheels of the bot and of every dependency (vodozemac ships manylinux wheels)
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY templates ./templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- run: no compiler, no sources, a non-root user
FROM python:3.11-slim
# BLUEHATS_OPS_HTTP: /healthz inside the container, for HEALTHCHECK (overrides ops.http).
# BLUEHATS_DSFR_DIST: the `dsfr` theme's files, served by the bot under /static/dsfr/
# (bot.web.assets.dsfr_dist), copied from the web stage.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BLUEHATS_OPS_HTTP=127.0.0.1:9108 \
    BLUEHATS_DSFR_DIST=/opt/dsfr
RUN useradd --create-home --uid 10001 bluehats \
    && mkdir /data && chown bluehats:bluehats /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
COPY --from=web /dsfr /opt/dsfr
USER bluehats
WORKDIR /data
VOLUME /data
# 200 while the bot syncs; 503 (unhealthy) when its sync loop is stuck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]
ENTRYPOINT ["bluehats-bot"]
CMD ["run", "--config", "/data/config.yaml"]
