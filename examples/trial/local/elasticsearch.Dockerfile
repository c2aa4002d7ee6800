# A local stand-in for the official Elasticsearch image: the same Maven-built distribution that
# elasticsearch/es-node runs, on the local base with Debian's Java 17 runtime. The build context
# is the unpacked distribution (scripts/trial prepares it).
ARG BASE=sidecars-base-local:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 elasticsearch \
    && useradd --uid 1000 --gid 1000 --home-dir /usr/share/elasticsearch elasticsearch
COPY --chown=1000:1000 . /usr/share/elasticsearch
COPY --chown=1000:1000 elasticsearch.yml /usr/share/elasticsearch/config/elasticsearch.yml
ENV ES_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    ES_JAVA_OPTS="-Xms512m -Xmx512m"
WORKDIR /usr/share/elasticsearch
USER 1000:1000
EXPOSE 9200
CMD ["/usr/share/elasticsearch/bin/elasticsearch"]
