# One image for the three programs: consumer, report-api, producer.
#   docker build -t coworking-analytics .
#   docker run --rm coworking-analytics report-api --help

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends librabbitmq-dev libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Benchmarks ./Benchmarks
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product consumer \
    && swift build -c release --static-swift-stdlib --product report-api \
    && swift build -c release --static-swift-stdlib --product producer \
    && mkdir /out \
    && cp "$(swift build -c release --show-bin-path)"/consumer \
          "$(swift build -c release --show-bin-path)"/report-api \
          "$(swift build -c release --show-bin-path)"/producer /out/ \
    && cp -R "$(swift build -c release --show-bin-path)"/coworking-analytics_ReportAPICore.resources /out/

FROM debian:bookworm-slim
# The two C libraries, time zone data for REPORT_TIMEZONES, and Chart.js for the dashboard (served from this image,
# never from a CDN).
RUN apt-get update \
    && apt-get install -y --no-install-recommends librabbitmq4 libpq5 tzdata ca-certificates libjs-chart.js \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 5153 9090
HEALTHCHECK NONE
ENTRYPOINT []
CMD ["report-api"]
