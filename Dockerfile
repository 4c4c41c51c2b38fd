# sms-outbox daemon. Configure with SMS_OUTBOX_* variables and secret files, for example:
#   docker run -v sms-keys:/keys \
#              -e SMS_OUTBOX_MONGODB__URI_FILE=/run/secrets/mongodb_uri \
#              -e SMS_OUTBOX_FLOWROUTE__ACCESS_KEY_FILE=/run/secrets/fr_access \
#              -e SMS_OUTBOX_FLOWROUTE__SECRET_KEY_FILE=/run/secrets/fr_secret sms-outbox
# Signing keys (users/<user>.key and daemon.key) live on the /keys volume, owned by uid 10001.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SMS_OUTBOX_SECURITY__KEYS_DIR=/keys SMS_OUTBOX_METRICS__LISTEN=0.0.0.0:9100

WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobs ./jobs
COPY scheduler ./scheduler
RUN pip install . \
    && useradd --system --uid 10001 --user-group --no-create-home sms \
    && mkdir -p /keys \
    && chown 10001:10001 /keys \
    && chmod 0700 /keys

VOLUME ["/keys"]
USER 10001:10001
# Metrics on :9100/metrics. With metrics.listen set, `check` asks the daemon's /healthz (is
# its send cycle alive?); without it, whether the database answers.
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["sms-outbox", "check"]
# SIGTERM stops the daemon gracefully: in-flight sends finish, unsent claims are released.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sms-outbox"]
CMD ["run"]
