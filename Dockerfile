# syntax=docker/dockerfile:1
# threadstore as one self-contained binary on a distroless base.
#   docker build -t threadstore .
#   docker run -p 3000:3000 -e ADMIN_API_KEY=... -e DATABASE_URL=postgres://... threadstore
# Without DATABASE_URL the embedded database lives in /data: mount a volume there to keep it.

# Node and npm rather than the Bun image: the lockfile is npm's, and `npm ci` installs the exact
# Bun version the project pins (the `bun` dev dependency).
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY drizzle ./drizzle
COPY src ./src
RUN npm run build && ./dist/threadstore --version
# The runtime image has no shell to create the data directory with.
RUN mkdir -p /rootfs/data

# glibc is all the binary links against (ldd: libc, libpthread, libdl, libm); :nonroot runs as
# uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /app/dist/threadstore /usr/local/bin/threadstore
COPY --from=build --chown=65532:65532 /rootfs/data /data
ENV NODE_ENV=production PORT=3000 HOST=0.0.0.0 DATA_DIR=/data
USER 65532:65532
EXPOSE 3000
# The binary probes its own /livez: distroless has no curl. The start period covers creating
# a fresh embedded database (several seconds).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/threadstore", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/threadstore"]
CMD ["serve"]
