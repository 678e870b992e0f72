# A stand-in for the public prom/prometheus image, from Debian's prometheus package, for sites without a
# container registry. Same entry point and data folder as the public image (/prometheus, a volume in compose).
ARG BASE_IMAGE=lora-scorer-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
