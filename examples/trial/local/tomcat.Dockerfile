# A local stand-in for the official tomcat:10.1 image, for machines that cannot pull it: Debian's
# tomcat10 on the project's local base, laid out like the official image (CATALINA_BASE
# /usr/local/tomcat with webapps/, logs/, temp/, work/) so the same mounts work for both.
ARG BASE=sidecars-base-local:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends tomcat10 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/tomcat/webapps /usr/local/tomcat/logs /usr/local/tomcat/temp \
        /usr/local/tomcat/work \
    && cp -rL /etc/tomcat10 /usr/local/tomcat/conf \
    && chmod -R a+rX /usr/local/tomcat
ENV CATALINA_HOME=/usr/share/tomcat10 \
    CATALINA_BASE=/usr/local/tomcat
WORKDIR /usr/local/tomcat
EXPOSE 8080
STOPSIGNAL SIGTERM
CMD ["/usr/share/tomcat10/bin/catalina.sh", "run"]
