# vigil's image: two static binaries on an empty base, nothing else — vigil
# (the agent and every command) and vigil-bgp (the same with its BGP speaker,
# GoBGP, linked in: `vigil manager` execs into it when bgp_enable is set).
#
#   docker build -t vigil .                       # compiles in the golang stage
#   docker buildx build --platform linux/amd64,linux/arm64 -t vigil .
#
# CI builds the same runtime stage without a Docker daemon or a registry:
# `make image` (testing/image/build.sh) cross-compiles bin/linux-<arch>/vigil
# and vigil-bgp with the host's Go and runs `buildah bud --target prebuilt`.
#
# The image's user is 65532 (nobody needs root to run `vigil version` or
# `vigil manifest`). The agent itself runs as uid 0 with every capability
# dropped but NET_ADMIN and NET_RAW (see docs/configuration.md, "Image"):
# Kubernetes gives a non-root container its added capabilities only in the
# bounding set, where the agent cannot use them.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY pkg ./pkg
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
    -ldflags "-s -w -X github.com/vigil-lb/vigil/pkg/cli.Version=${VERSION}" \
    -o /out/ ./cmd/vigil ./cmd/vigil-bgp

# The runtime stage from a binary built outside (make image).
FROM scratch AS prebuilt
ARG TARGETARCH
COPY bin/linux-${TARGETARCH}/vigil bin/linux-${TARGETARCH}/vigil-bgp /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil"]

# The default target: the same runtime stage from the build stage.
FROM scratch
COPY --from=build /out/vigil /out/vigil-bgp /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vigil"]
