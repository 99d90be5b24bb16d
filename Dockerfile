FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/liteskill /usr/local/bin/liteskill
WORKDIR /data
ENV HOST=0.0.0.0
EXPOSE 4000
CMD ["liteskill", "serve"]
