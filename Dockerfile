# BlueHats bot. Cannot be built on the development machines (no Docker engine):
# keep it in step with the README and with `bluehats-bot run`, which the tests run.
#
#   docker build -t bluehats-bot .
#   docker run -d --name bluehats -v bluehats-data:/data \
#       -e BLUEHATS_MATRIX_PASSWORD=... bluehats-bot
#
# /data holds config.yaml, the database, the saved session and the encryption
# keys: always mount a volume there. Without one (e.g. `--rm` alone) every start
# is a new device and the bot loses its keys.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY templates ./templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 bluehats \
    && mkdir /data && chown bluehats:bluehats /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER bluehats
WORKDIR /data
VOLUME /data
ENTRYPOINT ["bluehats-bot"]
CMD ["run", "--config", "/data/config.yaml"]
