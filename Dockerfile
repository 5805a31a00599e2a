# bcsync: one static binary on a distroless base, running as non-root.
#   docker build -t bcsync .
#   docker run --rm bcsync --help
# Used by docker-compose.yml and deploy/kubernetes/deployment.yaml.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/bcsync ./cmd/bcsync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bcsync /usr/local/bin/bcsync
# 65532:65532, distroless's "nonroot"; deployment.yaml runs it as that too.
USER nonroot:nonroot
WORKDIR /home/nonroot
# --admin-listen of `bcsync worker`: /metrics, /healthz, /readyz.
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/bcsync"]
CMD ["worker", "--config", "/etc/bcsync/bcsync.yaml"]
