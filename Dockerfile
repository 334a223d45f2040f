# Builds the tandem binary (the web editor is embedded) and runs it on a slim base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the versions in Cargo.lock, as CI tested them.
RUN cargo build --release --locked --bin tandem

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/tandem --create-home tandem
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
USER tandem
WORKDIR /var/lib/tandem
# The embedded SQLite store (./data/tandem.db) lives here when no DATABASE_URL is given.
VOLUME ["/var/lib/tandem"]
ENV TANDEM_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Reads the same settings as the server; exits 0 only when /readyz answers 200.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["tandem", "healthcheck"]
# SIGTERM: tandem saves every document within TANDEM_SHUTDOWN_TIMEOUT (8 s), under Docker's 10 s.
CMD ["tandem"]
