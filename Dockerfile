# mpesa-gateway container image.
#
#   docker build -t mpesa-gateway .
#   docker run -d -p 127.0.0.1:8000:8000 --env-file .env -v mpesa-data:/var/lib/mpesa-gateway mpesa-gateway
#
# Configuration comes from the environment (see .env.example). Without DATABASE_URL the SQLite
# file mpesa-gateway.db lands in /var/lib/mpesa-gateway (the working directory, a volume): keep
# that volume. Use PostgreSQL or MariaDB (docker-compose.yml) to run several containers.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mpesa-gateway \
    && install -m 0755 target/release/mpesa-gateway /usr/local/bin/mpesa-gateway

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 mpesa \
    && useradd --system --uid 10001 --gid mpesa --home-dir /var/lib/mpesa-gateway \
        --shell /usr/sbin/nologin mpesa \
    && install -d -o mpesa -g mpesa -m 0750 /var/lib/mpesa-gateway
COPY --from=builder /usr/local/bin/mpesa-gateway /usr/local/bin/mpesa-gateway

USER 10001:10001
WORKDIR /var/lib/mpesa-gateway
VOLUME ["/var/lib/mpesa-gateway"]
ENV GATEWAY_LISTEN=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["mpesa-gateway", "healthcheck", "--url", "http://127.0.0.1:8000"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mpesa-gateway"]
CMD ["serve"]
