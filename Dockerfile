# Images of the ping server and the provisioner: `docker build --target server .` / `--target provisioner .`
# Static musl binaries on distroless/static, running as the numeric non-root user 65532 (runAsNonRoot needs
# a number). Built for each platform by buildx in .github/workflows/images.yml.

FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p server -p provisioner \
    && mkdir -p /out \
    && cp target/release/server target/release/provisioner /out/

FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/server /server
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/server"]

FROM gcr.io/distroless/static-debian12:nonroot AS provisioner
COPY --from=build /out/provisioner /provisioner
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/provisioner"]
