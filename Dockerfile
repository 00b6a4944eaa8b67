# Static vigil binary on a distroless base. Needs NET_ADMIN + NET_RAW and
# hostNetwork at run time (see manifests/).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY pkg ./pkg
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/vigil-lb/vigil/pkg/cli.Version=${VERSION}" \
    -o /out/vigil ./cmd/vigil

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/vigil /usr/local/bin/vigil
ENTRYPOINT ["/usr/local/bin/vigil"]
