# Builds the tandem binary (the web editor is embedded) and runs it on a slim base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin tandem

FROM debian:bookworm-slim
RUN useradd --system --home /var/lib/tandem --create-home tandem
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
USER tandem
WORKDIR /var/lib/tandem
ENV TANDEM_LISTEN=0.0.0.0:8080
EXPOSE 8080
CMD ["tandem"]
