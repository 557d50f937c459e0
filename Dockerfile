# onechat container image: a static binary on a distroless base, run as a
# non-root user. Build: docker build -t onechat:$(git describe --tags --always) .
# Tags: vX.Y.Z for releases (the chart's appVersion), plus the short commit
# hash for anything else; no floating "latest" in the chart.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/onechat ./cmd/onechat

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/onechat /onechat
# The chart mounts a volume here; run alone, data stays in the container.
WORKDIR /data
USER 65532:65532
# HTTP API and WebSocket, TCP protocol, NATS routes, NATS client port.
EXPOSE 8080 7070 6222 4222
ENTRYPOINT ["/onechat"]
CMD ["--data", "/data"]
