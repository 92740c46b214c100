# syntax=docker/dockerfile:1

# wakeline: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t wakeline .
#   docker run -p 8080:8080 -v wakeline-data:/var/lib/wakeline wakeline
#
# With no config the gateway starts on its embedded defaults (bolt store in
# /var/lib/wakeline, VAPID keys generated once and kept there, no upstreams).
# A config file is mounted and named by WAKELINE_CONFIG, and any key can be
# overridden by a WAKELINE_* variable (INTERFACE.md):
#
#   docker run -p 8080:8080 -v wakeline-data:/var/lib/wakeline \
#     -v $PWD/config.yaml:/etc/wakeline/config.yaml:ro \
#     -e WAKELINE_CONFIG=/etc/wakeline/config.yaml \
#     -e WAKELINE_AUTH_REGISTRATION_TOKENS=... wakeline

FROM golang:1.26 AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# The Makefile's build command (make build), writing to /out. The cache
# mounts keep modules and build results across builds, and only the
# modules the binary needs are downloaded (not the test-only ones).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$VERSION" -o /out/wakeline ./cmd/wakeline
# The data directory, owned by the non-root user: the final image has no
# shell to create it, and a fresh named volume copies its ownership.
RUN mkdir -p /out/data

# Has CA certificates (for origins and push services over TLS), tzdata and
# the non-root user 65532; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wakeline /wakeline
COPY --from=build --chown=65532:65532 /out/data /var/lib/wakeline
USER 65532:65532
# The default bolt path (wakeline.db) is relative: it lands in the volume.
WORKDIR /var/lib/wakeline
VOLUME ["/var/lib/wakeline"]
# Every interface of the container, not the loopback default of the config.
# Environment variables win over the config file, so set listen with
# WAKELINE_LISTEN (and the health check's --url) to move the port.
ENV WAKELINE_LISTEN=0.0.0.0:8080
EXPOSE 8080
# No shell or curl in the image: the binary checks its own /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/wakeline", "healthcheck"]
ENTRYPOINT ["/wakeline"]
CMD ["serve"]
