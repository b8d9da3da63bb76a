# Spotlight: one static binary serving the HTTP API and web page.
#   docker build -t spotlight .
#   docker run -p 8080:8080 -v spotlight-data:/data -e SPOTLIGHT_TOKEN=$(openssl rand -hex 16) spotlight
# The container binds 0.0.0.0, so serve refuses to start without SPOTLIGHT_TOKEN.
# On an empty /data volume it first trains the default corpus (a few minutes).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/spotlight ./cmd/spotlight \
 && mkdir /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spotlight /usr/local/bin/spotlight
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
  CMD ["/usr/local/bin/spotlight", "healthcheck", "--addr", "127.0.0.1:8080"]
ENTRYPOINT ["/usr/local/bin/spotlight"]
CMD ["serve", "--data", "/data", "--addr", "0.0.0.0:8080"]
