# syntax=docker/dockerfile:1
# One image with both binaries: vmdistributed-webhook and vmdistributed-controller.
# The chart runs them with `command:` (there is no shell in the runtime image).
#
#   docker build -t ghcr.io/vmdistributed/vmdistributed:0.1.0 .

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: exactly the dependency versions in Cargo.lock. ring compiles with the image's cc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p vmdistributed-webhook -p vmdistributed-controller \
 && install -D -m 0755 target/release/vmdistributed-webhook /out/vmdistributed-webhook \
 && install -D -m 0755 target/release/vmdistributed-controller /out/vmdistributed-controller

# distroless/cc: glibc and libgcc only, no shell, no package manager; the :nonroot tag runs as
# UID/GID 65532, the same IDs the chart's security context sets.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
EXPOSE 8080 9443
ENTRYPOINT ["/usr/local/bin/vmdistributed-controller"]
CMD ["run"]
