# sms-outbox daemon. Configure with SMS_OUTBOX_* variables and secret files, for example:
#   docker run -e SMS_OUTBOX_MONGODB__URI_FILE=/run/secrets/mongodb_uri \
#              -e SMS_OUTBOX_FLOWROUTE__ACCESS_KEY_FILE=/run/secrets/fr_access \
#              -e SMS_OUTBOX_FLOWROUTE__SECRET_KEY_FILE=/run/secrets/fr_secret sms-outbox
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY jobs ./jobs
COPY scheduler ./scheduler
RUN pip install . && useradd --system --uid 10001 --no-create-home sms

USER sms
# Metrics on :9100/metrics; /healthz says the send cycle is alive, /readyz that it can send.
ENV SMS_OUTBOX_METRICS__LISTEN=0.0.0.0:9100
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/healthz', timeout=4)"]
# SIGTERM stops the daemon gracefully: in-flight sends finish, unsent claims are released.
STOPSIGNAL SIGTERM
ENTRYPOINT ["sms-outbox"]
CMD ["run"]
