# A stand-in for the public redis:7 image, from Debian's redis-server (bookworm: 7.0), for sites without a
# container registry. Like the public image it runs `redis-server ARGS` with protected mode off (compose's
# network is the only way in) in /data.
ARG BASE_IMAGE=lora-scorer-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data \
 && printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; exec redis-server --protected-mode no "$@"; fi\nexec "$@"\n' \
    > /usr/local/bin/redis-entry \
 && chmod 0755 /usr/local/bin/redis-entry
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entry"]
CMD ["redis-server"]
